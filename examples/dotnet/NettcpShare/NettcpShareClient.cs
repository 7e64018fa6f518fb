// A connection to nettcpd's control socket (control protocol version 1, nettcpd.ini(5)
// "control"): register Via prefixes, validate a Via, take handed-off client sockets.
//
// A registration lives exactly as long as this connection: Dispose (or the process's exit,
// kill -9 included) ends every registration made on it.
//
// One reader thread owns every read of the control socket, because replies (tagged) and
// HANDOFF / REVOKED messages (untagged, at any time) arrive on it interleaved: it hands
// each reply to the call waiting for its tag and queues each HANDOFF for Accept. Calls
// may come from any thread.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Threading;

namespace Nettcpd.Share
{
    // An ERR answer from nettcpd; Code is the protocol's error code (denied, conflict, ...).
    public sealed class NettcpShareException : Exception
    {
        public string Code { get; }
        public NettcpShareException(string code, string message) : base(message) { Code = code; }
    }

    // A client connection nettcpd handed over: the socket (blocking, owned by the caller)
    // and every byte nettcpd had read from it, which the service must parse first.
    public sealed class HandoffConnection : IDisposable
    {
        public long HandoffId { get; }
        public long RegistrationId { get; }
        public Socket Socket { get; }
        public byte[] Preamble { get; }

        internal HandoffConnection(long handoffId, long regId, Socket socket, byte[] preamble)
        {
            HandoffId = handoffId;
            RegistrationId = regId;
            Socket = socket;
            Preamble = preamble;
        }

        public void Dispose() => Socket.Dispose();
    }

    public sealed class NettcpShareClient : IDisposable
    {
        // nettcpctl's documented default when no path is given.
        public const string DefaultControlPath = "/run/nettcpd/control.sock";
        public const int ProtocolVersion = 1;
        // A client message is at most CTL_MSG_MAX bytes; a HANDOFF at most 512 bytes of
        // text plus NMF_PREAMBLE_MAX (2583) of preamble. Anything longer is refused.
        public const int MessageMax = 4096;
        const int ReceiveMax = 8192;

        readonly Socket control;
        readonly object sendLock = new object();
        readonly object stateLock = new object();
        readonly Dictionary<uint, Pending> pending = new Dictionary<uint, Pending>();
        readonly Queue<HandoffConnection> handoffs = new Queue<HandoffConnection>();
        readonly Thread reader;
        uint lastTag;
        string closedReason;   // non-null once the connection is gone

        // The daemon's version string from HELLO ("nettcpd/<VERSION>").
        public string ServerVersion { get; private set; }
        // How long a request waits for its reply.
        public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(10);
        // Raised on the reader thread when nettcpd drops a registration (REVOKED):
        // the reg-id, the error code and nettcpd's text.
        public event Action<long, string, string> Revoked;

        sealed class Pending
        {
            public string Final;   // the OK or ERR line, or null while waiting
        }

        NettcpShareClient(Socket control)
        {
            this.control = control;
            reader = new Thread(ReadLoop) { IsBackground = true, Name = "nettcpshare control reader" };
        }

        // Connects to the control socket at path and says HELLO.
        public static NettcpShareClient Connect(string path = DefaultControlPath)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
            NettcpShareClient client = null;
            try {
                socket.Connect(new UnixDomainSocketEndPoint(path));
                client = new NettcpShareClient(socket);
                client.reader.Start();
                string[] ok = client.Request("HELLO", ProtocolVersion.ToString(CultureInfo.InvariantCulture));
                if (ok.Length != 2 || ok[0] != "1")
                    throw new InvalidOperationException("nettcpd answered HELLO with 'OK " + string.Join(" ", ok) + "'");
                client.ServerVersion = ok[1];
                return client;
            } catch {
                if (client != null)
                    client.Dispose();
                else
                    socket.Dispose();
                throw;
            }
        }

        // REGISTER ... handoff: nettcpd passes each client whose Via falls under prefix.
        public long RegisterHandoff(string viaPrefix) => ParseId(Request("REGISTER", Token(viaPrefix) + " handoff"));

        // REGISTER ... proxy: nettcpd forwards those clients to backend (host:port, [v6]:port, unix:/path).
        public long RegisterProxy(string viaPrefix, string backend)
            => ParseId(Request("REGISTER", Token(viaPrefix) + " proxy " + Token(backend)));

        public void Unregister(long regId) => Request("UNREGISTER", regId.ToString(CultureInfo.InvariantCulture));

        // VALIDATE (WCF's ValidateUriRoute): would a preamble with this Via reach registration
        // regId now? A handed-off connection that carries a next session must ask before it
        // answers that preamble, and close the connection on false: the client then dials
        // again and nettcpd routes it afresh.
        public bool Validate(long regId, string via)
        {
            string[] ok = Request("VALIDATE", regId.ToString(CultureInfo.InvariantCulture) + " " + Token(via));
            if (ok.Length == 1 && ok[0] == "yes") return true;
            if (ok.Length == 1 && ok[0] == "no") return false;
            throw new InvalidOperationException("nettcpd answered VALIDATE with 'OK " + string.Join(" ", ok) + "'");
        }

        // Waits for the next handed-off client connection, tells nettcpd it is TAKEN, and
        // returns it. Returns null once the control connection is closed (then every
        // registration is gone), or on timeout. nettcpd gives each handoff handoff_timeout
        // (5 s by default) to be taken: a service that calls Accept later than that finds
        // the client already answered with EndpointUnavailable.
        public HandoffConnection Accept(TimeSpan timeout)
        {
            HandoffConnection h;
            lock (stateLock) {
                var until = DateTime.UtcNow + timeout;
                while (handoffs.Count == 0 && closedReason == null) {
                    var left = until - DateTime.UtcNow;
                    if (left <= TimeSpan.Zero)
                        return null;
                    Monitor.Wait(stateLock, left);
                }
                if (handoffs.Count == 0)
                    return null;
                h = handoffs.Dequeue();
            }
            try {
                Send("TAKEN " + h.HandoffId.ToString(CultureInfo.InvariantCulture));
                // nettcpd's copy shared the descriptor's flags until TAKEN: set them only now,
                // the descriptor's (O_NONBLOCK) first, then .NET's idea of it
                Native.SetBlocking(h.Socket.Handle);
                h.Socket.Blocking = true;
            } catch {
                h.Dispose();
                throw;
            }
            return h;
        }

        // Why the control connection is closed, or null while it is open.
        public string ClosedReason { get { lock (stateLock) return closedReason; } }

        public void Dispose()
        {
            // shutdown wakes the reader thread's recvmsg with end of stream
            try { control.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
            if (reader.IsAlive && Thread.CurrentThread != reader)
                reader.Join();
            Close("closed by this process");
            control.Dispose();
        }

        // ------------------------------------------------------------------ requests

        // A token of the protocol: printable ASCII, no space (ctlproto: 0x21..0x7e).
        static string Token(string s)
        {
            if (string.IsNullOrEmpty(s))
                throw new ArgumentException("empty token");
            foreach (char c in s)
                if (c < 0x21 || c > 0x7e)
                    throw new ArgumentException("'" + s + "' has a character a control message cannot carry (space, control or non-ASCII)");
            return s;
        }

        static long ParseId(string[] ok)
        {
            if (ok.Length != 1 || !long.TryParse(ok[0], NumberStyles.None, CultureInfo.InvariantCulture, out long id) || id < 1)
                throw new InvalidOperationException("nettcpd answered REGISTER with 'OK " + string.Join(" ", ok) + "'");
            return id;
        }

        void Send(string text)
        {
            byte[] bytes = Encoding.ASCII.GetBytes(text);
            if (bytes.Length > MessageMax)
                throw new ArgumentException("control message of " + bytes.Length + " bytes, more than " + MessageMax);
            lock (sendLock) {
                // SOCK_SEQPACKET: one send is one whole message, or an exception
                control.Send(bytes);
            }
        }

        // Sends "VERB tag args" and waits for its OK (returns the tokens after the tag) or
        // ERR (throws NettcpShareException).
        string[] Request(string verb, string args)
        {
            var p = new Pending();
            uint tag;
            lock (stateLock) {
                if (closedReason != null)
                    throw new InvalidOperationException("control connection closed: " + closedReason);
                tag = ++lastTag == 0 ? ++lastTag : lastTag;   // tags are 1..2^32-1
                pending[tag] = p;
            }
            try {
                Send(verb + " " + tag.ToString(CultureInfo.InvariantCulture) + " " + args);
                lock (stateLock) {
                    var until = DateTime.UtcNow + RequestTimeout;
                    while (p.Final == null && closedReason == null) {
                        var left = until - DateTime.UtcNow;
                        if (left <= TimeSpan.Zero)
                            throw new TimeoutException("no answer to " + verb + " within " + RequestTimeout.TotalSeconds + " s");
                        Monitor.Wait(stateLock, left);
                    }
                    if (p.Final == null)
                        throw new InvalidOperationException("control connection closed: " + closedReason);
                }
            } finally {
                lock (stateLock) pending.Remove(tag);
            }
            string[] t = p.Final.Split(' ');
            if (t[0] == "ERR") {
                string[] e = p.Final.Split(' ', 4);
                throw new NettcpShareException(e.Length > 2 ? e[2] : "", verb + " refused: " + p.Final);
            }
            return t[2..];
        }

        // ------------------------------------------------------------------ reader thread

        void ReadLoop()
        {
            byte[] buf = new byte[ReceiveMax];
            string why = "end of stream from nettcpd";
            try {
                for (;;) {
                    var r = Native.Receive(control.Handle, buf, out int len, out int fd);
                    if (r == Native.Result.Eof)
                        break;
                    if (r == Native.Result.WouldBlock) {
                        control.Poll(-1, SelectMode.SelectRead);
                        continue;
                    }
                    Dispatch(buf, len, fd);
                }
            } catch (Exception e) {
                why = e.Message;
            }
            Close(why);
        }

        // One message from nettcpd. A descriptor not wanted here is closed; a message
        // that breaks the protocol ends the connection (throws).
        void Dispatch(byte[] buf, int len, int fd)
        {
            int nl = Array.IndexOf(buf, (byte) '\n', 0, len);
            string line = Encoding.ASCII.GetString(buf, 0, nl < 0 ? len : nl);
            string[] t = line.Split(' ');
            try {
                if (t[0] == "HANDOFF") {
                    // HANDOFF <handoff-id> <reg-id> <nbytes>\n<nbytes raw preamble bytes> + fd
                    if (t.Length != 4 || nl < 0 || fd < 0
                        || !long.TryParse(t[1], NumberStyles.None, CultureInfo.InvariantCulture, out long hid)
                        || !long.TryParse(t[2], NumberStyles.None, CultureInfo.InvariantCulture, out long rid)
                        || !int.TryParse(t[3], NumberStyles.None, CultureInfo.InvariantCulture, out int n)
                        || n != len - nl - 1)
                        throw new InvalidOperationException("malformed HANDOFF message '" + line + "' (" + len + " bytes, descriptor " + fd + ")");
                    var socket = new Socket(new SafeSocketHandle((IntPtr) fd, true));
                    fd = -1;   // the Socket owns it now
                    var h = new HandoffConnection(hid, rid, socket, buf[(nl + 1)..len]);
                    lock (stateLock) {
                        handoffs.Enqueue(h);
                        Monitor.PulseAll(stateLock);
                    }
                } else if (t[0] == "REVOKED" && t.Length >= 3
                           && long.TryParse(t[1], NumberStyles.None, CultureInfo.InvariantCulture, out long revoked)) {
                    string[] r = line.Split(' ', 4);
                    Revoked?.Invoke(revoked, r[2], r.Length > 3 ? r[3] : "");
                } else if ((t[0] == "OK" || t[0] == "ERR" || t[0] == "ROUTE" || t[0] == "STAT") && t.Length >= 2
                           && uint.TryParse(t[1], NumberStyles.None, CultureInfo.InvariantCulture, out uint tag)) {
                    lock (stateLock) {
                        if (t[0] == "ERR" && tag == 0) {
                            // nettcpd could not parse a request far enough to name it
                            throw new NettcpShareException(t.Length > 2 ? t[2] : "", "nettcpd: " + line);
                        }
                        // ROUTE and STAT lines (LIST, STATS) are not asked for here; a reply
                        // to a request that timed out finds no one waiting: both dropped
                        if ((t[0] == "OK" || t[0] == "ERR") && pending.TryGetValue(tag, out Pending p)) {
                            p.Final = line;
                            Monitor.PulseAll(stateLock);
                        }
                    }
                } else {
                    throw new InvalidOperationException("unexpected control message '" + line + "'");
                }
            } finally {
                Native.Close(fd);
            }
        }

        void Close(string why)
        {
            var drop = new List<HandoffConnection>();
            lock (stateLock) {
                closedReason ??= why;
                // handoffs not yet taken: nettcpd answers those clients itself (never TAKEN)
                while (handoffs.Count > 0) drop.Add(handoffs.Dequeue());
                Monitor.PulseAll(stateLock);
            }
            foreach (var h in drop) h.Dispose();
        }
    }
}
