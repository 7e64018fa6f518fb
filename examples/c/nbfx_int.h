/*
 * nbfx_int.h - what the reader (nbfx.c) and the writer (nbfx_write.c) of
 * the binary SOAP messages share: [MC-NBFX] record types and the ids of
 * the [MC-NBFS] static dictionary strings they use.
 */
#ifndef NBFX_INT_H
#define NBFX_INT_H

/* Record types ([MC-NBFX] 2.2, XmlBinaryNodeType). */
enum {
	REC_END_ELEMENT = 0x01,
	REC_COMMENT = 0x02,
	REC_ARRAY = 0x03,
	REC_SHORT_ATTRIBUTE = 0x04,
	REC_ATTRIBUTE = 0x05,
	REC_SHORT_DICT_ATTRIBUTE = 0x06,
	REC_DICT_ATTRIBUTE = 0x07,
	REC_SHORT_XMLNS = 0x08,
	REC_XMLNS = 0x09,
	REC_SHORT_DICT_XMLNS = 0x0A,
	REC_DICT_XMLNS = 0x0B,
	REC_PREFIX_DICT_ATTRIBUTE_A = 0x0C,
	REC_PREFIX_DICT_ATTRIBUTE_Z = 0x25,
	REC_PREFIX_ATTRIBUTE_A = 0x26,
	REC_PREFIX_ATTRIBUTE_Z = 0x3F,
	REC_SHORT_ELEMENT = 0x40,
	REC_ELEMENT = 0x41,
	REC_SHORT_DICT_ELEMENT = 0x42,
	REC_DICT_ELEMENT = 0x43,
	REC_PREFIX_DICT_ELEMENT_A = 0x44,
	REC_PREFIX_DICT_ELEMENT_Z = 0x5D,
	REC_PREFIX_ELEMENT_A = 0x5E,
	REC_PREFIX_ELEMENT_Z = 0x77,
	/* Text records; each has a twin one above it that also ends the element. */
	REC_ZERO_TEXT = 0x80,
	REC_ONE_TEXT = 0x82,
	REC_FALSE_TEXT = 0x84,
	REC_TRUE_TEXT = 0x86,
	REC_INT8_TEXT = 0x88,
	REC_INT16_TEXT = 0x8A,
	REC_INT32_TEXT = 0x8C,
	REC_INT64_TEXT = 0x8E,
	REC_FLOAT_TEXT = 0x90,
	REC_DOUBLE_TEXT = 0x92,
	REC_DECIMAL_TEXT = 0x94,
	REC_DATETIME_TEXT = 0x96,
	REC_CHARS8_TEXT = 0x98,
	REC_CHARS16_TEXT = 0x9A,
	REC_CHARS32_TEXT = 0x9C,
	REC_BYTES8_TEXT = 0x9E,
	REC_BYTES16_TEXT = 0xA0,
	REC_BYTES32_TEXT = 0xA2,
	REC_START_LIST_TEXT = 0xA4,
	REC_END_LIST_TEXT = 0xA6,
	REC_EMPTY_TEXT = 0xA8,
	REC_DICT_TEXT = 0xAA,
	REC_UNIQUEID_TEXT = 0xAC,
	REC_TIMESPAN_TEXT = 0xAE,
	REC_UUID_TEXT = 0xB0,
	REC_UINT64_TEXT = 0xB2,
	REC_BOOL_TEXT = 0xB4,
	REC_UNICODE_CHARS8_TEXT = 0xB6,
	REC_UNICODE_CHARS16_TEXT = 0xB8,
	REC_UNICODE_CHARS32_TEXT = 0xBA,
	REC_QNAME_DICT_TEXT = 0xBC,
	REC_TEXT_LAST = 0xBD,
};
#define REC_WITH_END 0x01u   /* set on a text record: it also ends the element */

/* [MC-NBFS] static dictionary: only the strings this reader matches or the
 * writer uses, at their ids (2 x the string's index in the dictionary). */
enum {
	DICT_MUST_UNDERSTAND = 0,
	DICT_ENVELOPE = 2,
	DICT_SOAP12_NS = 4,         /* http://www.w3.org/2003/05/soap-envelope */
	DICT_ADDRESSING_NS = 6,     /* http://www.w3.org/2005/08/addressing */
	DICT_HEADER = 8,
	DICT_ACTION = 10,
	DICT_TO = 12,
	DICT_BODY = 14,
	DICT_RELATES_TO = 18,
	DICT_MESSAGE_ID = 26,
};

#define NBFX_UNIQUEID_LEN 16u  /* a UniqueId record's GUID */

#endif
