// Reads [MC-NMF] primitives from a socket, starting with bytes already read from it
// (the preamble bytes nettcpd passes with a handed-off socket).
using System;
using System.Net.Sockets;

namespace Nettcpd.HandoffExample
{
    // The peer closed where a record was expected, or broke the framing.
    sealed class FramingException : Exception
    {
        public FramingException(string message) : base(message) { }
    }

    sealed class FramingReader
    {
        readonly Socket socket;
        byte[] buf;
        int pos, end;

        public FramingReader(Socket socket, byte[] initial)
        {
            this.socket = socket;
            buf = new byte[Math.Max(64 * 1024, initial.Length)];
            Array.Copy(initial, buf, initial.Length);
            end = initial.Length;
        }

        // Bytes read from the socket (or given) and not yet consumed.
        public int Buffered => end - pos;

        // Refills an empty buffer; false at end of stream.
        bool Fill()
        {
            pos = 0;
            end = socket.Receive(buf, 0, buf.Length, SocketFlags.None);
            return end > 0;
        }

        // The next byte, or -1 at a clean end of stream.
        public int ReadByteOrEof()
        {
            if (pos == end && !Fill())
                return -1;
            return buf[pos++];
        }

        public byte ReadByte()
        {
            int b = ReadByteOrEof();
            if (b < 0)
                throw new FramingException("end of stream inside a record");
            return (byte) b;
        }

        // A size field: base-128, least significant group first, at most 5 bytes and
        // 2^31 - 1 (nmf-protocol.md 1.1, as .NET's IntDecoder).
        public int ReadMbInt()
        {
            int value = 0;
            for (int i = 0; i < 5; i++) {
                byte b = ReadByte();
                if (i == 4 && (b & 0xF8) != 0)
                    throw new FramingException("size field above 2^31 - 1");
                value |= (b & 0x7F) << (7 * i);
                if ((b & 0x80) == 0)
                    return value;
            }
            throw new FramingException("size field longer than 5 bytes");
        }

        // Exactly n bytes into dst.
        public void ReadExactly(byte[] dst, int n)
        {
            int got = 0;
            while (got < n) {
                if (pos == end && !Fill())
                    throw new FramingException("end of stream after " + got + " of " + n + " bytes of a record");
                int k = Math.Min(n - got, end - pos);
                Array.Copy(buf, pos, dst, got, k);
                pos += k;
                got += k;
            }
        }
    }
}
