/*
 * fuzz.h - what every harness shares.
 *
 * A harness is one LLVMFuzzerTestOneInput().  Built with clang and
 * -fsanitize=fuzzer it is a libFuzzer target (make fuzz); built with the
 * project's compiler and linked with replay.c it replays the seed corpus and
 * the regression inputs under make check.  A broken invariant aborts, so
 * both builds report it the same way.
 */
#ifndef NETTCPD_FUZZ_H
#define NETTCPD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline _Noreturn void
fuzz_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
	abort();
}

/* assert() that no NDEBUG can turn off. */
#define FUZZ_CHECK(cond) \
	do { \
		if (!(cond)) \
			fuzz_fail(__FILE__, __LINE__, #cond); \
	} while (0)

#endif
