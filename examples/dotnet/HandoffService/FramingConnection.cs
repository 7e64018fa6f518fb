// The server side of one [MC-NMF] connection, as a WCF net.tcp service runs it
// (nmf-protocol.md 3 and 4): for each session on the connection, read the preamble
// (Version, Mode duplex, Via, binary session encoding, Preamble End), answer Preamble Ack
// (0x0B), answer each Sized Envelope (0x06) with one, answer End (0x07) with End, then
// read the next preamble on the same connection, which the .NET client sends there when
// it pools the connection for its next channel to the same host:port.
//
// The SOAP messages go through WCF's own binary session encoder (a new one per session:
// the dynamic dictionary lives for one session).
using System;
using System.Collections.Generic;
using System.Net.Sockets;
using System.ServiceModel.Channels;
using System.Text;

namespace Nettcpd.HandoffExample
{
    // What to do with a session's Via: serve it, close the connection without a word
    // (a pooled connection whose next Via routes elsewhere: the client dials again), or
    // answer the framing Fault EndpointNotFound.
    enum ViaDecision { Serve, Close, NotFound }

    sealed class FramingConnection
    {
        const string FaultPrefix = "http://schemas.microsoft.com/ws/2006/05/framing/faults/";
        const string BinarySession = "application/soap+msbinsession1";
        const int ViaMax = 2048;                  // MaxViaSize of every .NET implementation
        const int ContentTypeMax = 256;
        const int EnvelopeMax = 64 * 1024 * 1024; // above the interop binding's 16 MiB

        readonly Socket socket;
        readonly FramingReader reader;
        readonly MessageEncoderFactory encoders;
        readonly BufferManager buffers;
        readonly WhoAmIService service;
        readonly Func<string, int, ViaDecision> route;
        readonly Action<string> log;

        // route(via, session) decides each session's Via (sessions count from 1);
        // log gets one line per event, without a prefix.
        public FramingConnection(Socket socket, byte[] preamble, MessageEncoderFactory encoders, BufferManager buffers,
                                 WhoAmIService service, Func<string, int, ViaDecision> route, Action<string> log)
        {
            this.socket = socket;
            reader = new FramingReader(socket, preamble);
            this.encoders = encoders;
            this.buffers = buffers;
            this.service = service;
            this.route = route;
            this.log = log;
        }

        // Serves sessions until the client closes, then closes the socket. Never throws.
        public void Run()
        {
            int session = 0;
            var vias = new List<string>();
            try {
                for (;;) {
                    int first = reader.ReadByteOrEof();
                    if (first < 0) {
                        log("closed by the client after " + session + " session(s):" + string.Concat(vias.ConvertAll(v => " Via '" + v + "'")));
                        break;
                    }
                    session++;
                    string fault = ReadPreamble((byte) first, out string via);
                    if (fault != null) {
                        log("session " + session + ": " + (via == null ? "" : "Via '" + via + "': ") + "refused with the framing Fault " + fault);
                        SendFault(fault);
                        break;
                    }
                    ViaDecision decision = route(via, session);
                    if (decision == ViaDecision.NotFound) {
                        log("session " + session + ": Via '" + via + "' is not served here: framing Fault EndpointNotFound");
                        SendFault("EndpointNotFound");
                        break;
                    }
                    if (decision == ViaDecision.Close) {
                        log("session " + session + ": Via '" + via + "' no longer routes here: connection closed for the client to dial again");
                        break;
                    }
                    vias.Add(via);
                    log("session " + session + ": Via '" + via + "'");
                    socket.Send(new byte[] { 0x0B });   // Preamble Ack
                    int messages = ServeSession();
                    if (messages < 0) {
                        log("session " + session + ": closed by the client before End, after " + (-messages - 1) + " message(s)");
                        break;
                    }
                    log("session " + session + ": " + messages + " message(s) answered, End answered");
                }
            } catch (Exception e) {
                // a broken client, a reset, an idle timeout, a message the encoder refuses:
                // this connection ends, the service goes on
                log("error in session " + session + ": " + e.GetType().Name + ": " + e.Message);
            } finally {
                socket.Dispose();
            }
        }

        // Reads the rest of a preamble whose first byte is first. Returns null and the Via,
        // or the name of the framing Fault to answer (via as far as read).
        string ReadPreamble(byte first, out string via)
        {
            via = null;
            if (first != 0x00)
                throw new FramingException("record 0x" + first.ToString("X2") + " where a preamble starts");
            if (reader.ReadByte() != 1) { reader.ReadByte(); return "UnsupportedVersion"; }
            reader.ReadByte();   // minor version: not checked (nmf-protocol.md 1.3)
            if (reader.ReadByte() != 0x01)
                throw new FramingException("no Mode record after Version");
            if (reader.ReadByte() != 0x02)
                return "UnsupportedMode";   // this service is a duplex session service only
            if (reader.ReadByte() != 0x02)
                throw new FramingException("no Via record after Mode");
            via = ReadString(ViaMax, "Via");
            if (!Uri.TryCreate(via, UriKind.Absolute, out _))
                throw new FramingException("Via '" + via + "' is not an absolute URI");
            byte encoding = reader.ReadByte();
            if (encoding == 0x03) {
                if (reader.ReadByte() != 0x08) return "ContentTypeInvalid";
            } else if (encoding == 0x04) {
                if (ReadString(ContentTypeMax, "content type") != BinarySession) return "ContentTypeInvalid";
            } else {
                throw new FramingException("no Encoding record after Via");
            }
            byte end = reader.ReadByte();
            if (end == 0x09)
                return "UpgradeInvalid";   // no transport security here
            if (end != 0x0C)
                throw new FramingException("record 0x" + end.ToString("X2") + " where Preamble End belongs");
            return null;
        }

        string ReadString(int max, string what)
        {
            int n = reader.ReadMbInt();
            if (n > max)
                throw new FramingException(what + " of " + n + " bytes, more than " + max);
            byte[] b = new byte[n];
            reader.ReadExactly(b, n);
            return Encoding.UTF8.GetString(b);
        }

        // Answers the envelopes of one session until the client's End (then answers End
        // and returns the count), or end of stream (returns -1 - count).
        int ServeSession()
        {
            MessageEncoder encoder = encoders.CreateSessionEncoder();
            int messages = 0;
            for (;;) {
                int type = reader.ReadByteOrEof();
                if (type < 0)
                    return -1 - messages;
                if (type == 0x07) {
                    socket.Send(new byte[] { 0x07 });
                    return messages;
                }
                if (type != 0x06)
                    throw new FramingException("record 0x" + type.ToString("X2") + " inside a session");
                int size = reader.ReadMbInt();
                if (size > EnvelopeMax)
                    throw new FramingException("envelope of " + size + " bytes, more than " + EnvelopeMax);
                byte[] payload = buffers.TakeBuffer(size);
                reader.ReadExactly(payload, size);
                // the encoder owns payload now and gives it back to buffers when the message closes
                using Message request = encoder.ReadMessage(new ArraySegment<byte>(payload, 0, size), buffers);
                using Message reply = service.Handle(request);
                ArraySegment<byte> bytes = encoder.WriteMessage(reply, EnvelopeMax, buffers);
                try {
                    socket.Send(new List<ArraySegment<byte>> { new ArraySegment<byte>(RecordHeader(0x06, bytes.Count)), bytes });
                } finally {
                    buffers.ReturnBuffer(bytes.Array);
                }
                messages++;
            }
        }

        // A record's type byte and its size field for n bytes (base-128, low group first).
        static byte[] RecordHeader(byte type, int n)
        {
            var h = new List<byte> { type };
            do {
                byte b = (byte) (n & 0x7F);
                n >>= 7;
                h.Add(n != 0 ? (byte) (b | 0x80) : b);
            } while (n != 0);
            return h.ToArray();
        }

        // The framing Fault record NAME, then the end of this side of the connection.
        void SendFault(string name)
        {
            byte[] uri = Encoding.UTF8.GetBytes(FaultPrefix + name);
            var record = new List<byte>(RecordHeader(0x08, uri.Length));
            record.AddRange(uri);
            socket.Send(record.ToArray());
            socket.Shutdown(SocketShutdown.Send);
        }
    }
}
