// An example net.tcp service for the .NET WCF client that serves sockets nettcpd hands
// off (no proxy in the data path), or, to develop without nettcpd, sockets it accepts.
//
//   HandoffService --name NAME --via PREFIX --control PATH [--idle-timeout S] [--max-connections N]
//       connects to nettcpd's control socket PATH, registers PREFIX as handoff, and serves
//       each client connection nettcpd passes, starting from the preamble bytes nettcpd
//       read. A next session on the same connection is served only if VALIDATE says its
//       Via still routes to this registration; else the connection is closed. Exits 1 when
//       the registration is refused or the control connection ends (its routes are gone).
//   HandoffService --name NAME --via PREFIX --listen HOST:PORT [--idle-timeout S] [--max-connections N]
//       accepts TCP connections itself; a session whose Via path is not under PREFIX's
//       gets the framing Fault EndpointNotFound.
//
// It serves IWhoAmI (t/interop/mono/Contracts.cs): Hello(text) answers "NAME: text",
// RoundTrip(data) answers data. --idle-timeout (default 120 s, a WCF server's pooled
// connection IdleTimeout) bounds every wait for a client's bytes. At most N connections
// (default 256) are served at once; while that many are, no more are taken, so nettcpd
// answers the next clients with EndpointUnavailable once its handoff_timeout passes.
//
// Output, one line each, flushed at once (t/interop_dotnet_handoff.sh reads them):
//   LISTENING service NAME on HOST:PORT for PREFIX
//   REGISTERED service NAME: reg-id R for PREFIX on PATH (nettcpd/VERSION)
//   REFUSED service NAME: WHAT                          (exit 1)
//   HH:MM:SS.mmm service NAME conn N from PEER (handoff H, B preamble bytes)
//   HH:MM:SS.mmm service NAME conn N session K: ...     (FramingConnection's events)
//   HH:MM:SS.mmm service NAME control connection closed: WHY   (exit 1)
// Exit 2: bad arguments.
using System;
using System.Net;
using System.Net.Sockets;
using System.ServiceModel.Channels;
using System.Threading;
using System.Xml;
using Nettcpd.Share;

namespace Nettcpd.HandoffExample
{
    static class Program
    {
        static readonly object outLock = new object();
        static string name;
        static int idleMs;
        static MessageEncoderFactory encoders;
        static BufferManager buffers;
        static WhoAmIService service;
        static int connections;
        static SemaphoreSlim slots;   // one per connection served at once

        static void Say(string line)
        {
            lock (outLock) {
                Console.Out.WriteLine(line);
                Console.Out.Flush();
            }
        }

        static Action<string> ConnLog(int n)
            => line => Say(DateTime.UtcNow.ToString("HH:mm:ss.fff") + " service " + name + " conn " + n + " " + line);

        static int Main(string[] args)
        {
            string via = null, control = null, listen = null;
            int idle = 120, max = 256;
            try {
                for (int i = 0; i < args.Length; i++) {
                    switch (args[i]) {
                    case "--name": name = args[++i]; break;
                    case "--via": via = args[++i]; break;
                    case "--control": control = args[++i]; break;
                    case "--listen": listen = args[++i]; break;
                    case "--idle-timeout": idle = int.Parse(args[++i]); break;
                    case "--max-connections": max = int.Parse(args[++i]); break;
                    default: throw new ArgumentException("unknown argument " + args[i]);
                    }
                }
                if (name == null || via == null || (control == null) == (listen == null) || idle < 1 || max < 1)
                    throw new ArgumentException("need --name, --via and one of --control PATH / --listen HOST:PORT"
                        + " (--idle-timeout and --max-connections at least 1)");
            } catch (Exception e) {
                Console.Error.WriteLine("HandoffService: " + e.Message);
                return 2;
            }
            idleMs = idle * 1000;
            slots = new SemaphoreSlim(max, max);
            // WCF's binary encoder, with the quotas of the interop binding (1 MiB arrays and more)
            var binary = new BinaryMessageEncodingBindingElement();
            XmlDictionaryReaderQuotas.Max.CopyTo(binary.ReaderQuotas);
            encoders = binary.CreateMessageEncoderFactory();
            buffers = BufferManager.CreateBufferManager(64L * 1024 * 1024, 64 * 1024 * 1024);
            service = new WhoAmIService(name);
            return control != null ? RunHandoff(control, via) : RunListen(listen, via);
        }

        // Serves socket on a thread of its own, which gives its slot back when done.
        static void Serve(Socket socket, byte[] preamble, string what, Func<string, int, ViaDecision> route)
        {
            int n = Interlocked.Increment(ref connections);
            Action<string> log = ConnLog(n);
            try {
                socket.ReceiveTimeout = idleMs;
                socket.SendTimeout = idleMs;
                log("from " + socket.RemoteEndPoint + " (" + what + ")");
            } catch (SocketException e) {
                // the client went away before it was served (getpeername: not connected)
                log("(" + what + "): " + e.Message + ", closed");
                socket.Dispose();
                slots.Release();
                return;
            }
            var conn = new FramingConnection(socket, preamble, encoders, buffers, service, route, log);
            new Thread(() => {
                conn.Run();
                slots.Release();
            }) { IsBackground = true, Name = "conn " + n }.Start();
        }

        static int RunHandoff(string path, string prefix)
        {
            NettcpShareClient client;
            long regId;
            try {
                client = NettcpShareClient.Connect(path);
            } catch (Exception e) {
                Say("REFUSED service " + name + ": control socket " + path + ": " + e.Message);
                return 1;
            }
            try {
                regId = client.RegisterHandoff(prefix);
            } catch (Exception e) {
                Say("REFUSED service " + name + ": " + e.Message);
                client.Dispose();
                return 1;
            }
            client.Revoked += (id, code, text) => Say("service " + name + ": reg-id " + id + " revoked (" + code + "): " + text);
            Say("REGISTERED service " + name + ": reg-id " + regId + " for " + prefix + " on " + path + " (" + client.ServerVersion + ")");
            // The first session's Via is the one nettcpd routed here; a later one on the same
            // connection must be validated (the client pools connections per host:port).
            ViaDecision Route(string via, int session)
            {
                if (session == 1)
                    return ViaDecision.Serve;
                try {
                    return client.Validate(regId, via) ? ViaDecision.Serve : ViaDecision.Close;
                } catch (Exception) {
                    return ViaDecision.Close;   // no answer: the client dials again and nettcpd decides
                }
            }
            for (;;) {
                slots.Wait();
                HandoffConnection h = client.Accept(TimeSpan.FromSeconds(1));
                if (h != null) {
                    Serve(h.Socket, h.Preamble, "handoff " + h.HandoffId + ", " + h.Preamble.Length + " preamble bytes", Route);
                    continue;
                }
                slots.Release();
                if (client.ClosedReason != null) {
                    Say(DateTime.UtcNow.ToString("HH:mm:ss.fff") + " service " + name + " control connection closed: " + client.ClosedReason);
                    client.Dispose();
                    return 1;
                }
            }
        }

        static int RunListen(string hostPort, string prefix)
        {
            if (!IPEndPoint.TryParse(hostPort, out IPEndPoint ep) || ep.Port == 0) {
                Console.Error.WriteLine("HandoffService: --listen wants HOST:PORT, got '" + hostPort + "'");
                return 2;
            }
            string prefixPath = new Uri(prefix).AbsolutePath.TrimEnd('/');
            ViaDecision Route(string via, int session)
            {
                string path = new Uri(via).AbsolutePath;
                return path.Equals(prefixPath, StringComparison.OrdinalIgnoreCase)
                    || path.StartsWith(prefixPath + "/", StringComparison.OrdinalIgnoreCase)
                    ? ViaDecision.Serve : ViaDecision.NotFound;
            }
            var listener = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            listener.Bind(ep);
            listener.Listen(128);
            Say("LISTENING service " + name + " on " + hostPort + " for " + prefix);
            for (;;) {
                slots.Wait();
                Serve(listener.Accept(), Array.Empty<byte>(), "accepted", Route);
            }
        }
    }
}
