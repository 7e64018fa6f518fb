// The .NET WCF client (System.ServiceModel.NetTcp). Prints exactly one PASS or FAIL line.
//
//   InteropClient --address URI --expect-name NAME [--calls N] [--size BYTES] [--timeout S]
//       N calls of Hello on one channel, each reply must come from service NAME,
//       then (with --size) one RoundTrip of BYTES bytes, compared byte for byte.
//       --text-size CHARS: each Hello's text is "hello#k:" and CHARS euro signs, which
//       WCF's binary encoding writes as UTF-16 (it is shorter so than UTF-8).
//       --then URI2 NAME2 (repeatable, with --expect-name only): once that channel is
//       closed, a new ChannelFactory with the same binding opens a channel to URI2, whose
//       one Hello must be answered by service NAME2, and closes it; and so on. Every
//       factory stays open until the end: .NET pools a closed channel's connection per
//       host:port (shared by factories with equal transport settings, and closed with the
//       last of them), so each such channel to the same host:port sends its preamble, with
//       its own Via, on the connection of the channel before.
//   InteropClient --address URI --expect-endpoint-not-found [--timeout S]
//       the connection must be refused: .NET maps the framing Fault EndpointNotFound
//       to System.ServiceModel.EndpointNotFoundException.
//   InteropClient --address URI --expect-upgrade-invalid [--timeout S]
//       the connection must be refused with the framing Fault UpgradeInvalid, which .NET
//       raises as System.ServiceModel.ProtocolException (see UpgradeInvalidMessage).
//
// Options for TLS (the application/ssl-tls upgrade):
//   --tls-ca FILE        use SecurityMode.Transport with TcpClientCredentialType.None and
//                        trust exactly the CA certificate in PEM FILE (a chain built with
//                        CustomRootTrust, no revocation check); the server certificate must
//                        also match the identity below, which WCF checks against its DNS names;
//                        each certificate accepted is named on stderr by its SHA-1 thumbprint
//   --dns-identity NAME  the expected server identity (default: the address's host). WCF
//                        compares it with the certificate's DNS names only, never with an IP
//                        address, so a client dialling 127.0.0.1 needs --dns-identity localhost
//   --tls13              offer TLS 1.2 and 1.3 (WCF's default, TcpTransportSecurity.SslProtocols,
//                        stops at TLS 1.2)
//
// Exit 0 PASS, 1 FAIL, 2 bad arguments, 3 watchdog (no result within --timeout).
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.IdentityModel.Selectors;
using System.IdentityModel.Tokens;
using System.Linq;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.ServiceModel;
using System.ServiceModel.Channels;
using System.ServiceModel.Security;
using System.Threading;

namespace NettcpdInterop
{
    // Accepts a server certificate only if it chains to the one test CA: the CA is the
    // only trust anchor (not the system store), and the certificate must be valid for
    // server authentication. Host name checks are WCF's (the endpoint identity).
    sealed class TestCaValidator : X509CertificateValidator
    {
        readonly X509Certificate2 ca;
        public TestCaValidator(X509Certificate2 ca) { this.ca = ca; }

        public override void Validate(X509Certificate2 certificate)
        {
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(ca);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            chain.ChainPolicy.ApplicationPolicy.Add(new Oid("1.3.6.1.5.5.7.3.1")); // serverAuth
            if (!chain.Build(certificate)) {
                string why = string.Join("; ", chain.ChainStatus.Select(st => st.Status + " " + st.StatusInformation.Trim()));
                throw new SecurityTokenValidationException("server certificate '" + certificate.Subject
                    + "' does not chain to the test CA: " + why);
            }
            X509Certificate2 root = chain.ChainElements[chain.ChainElements.Count - 1].Certificate;
            if (!root.RawData.AsSpan().SequenceEqual(ca.RawData))
                throw new SecurityTokenValidationException("server certificate chains to '" + root.Subject + "', not the test CA");
            // on stderr, for the test to tell which certificate each handshake presented
            Console.Error.WriteLine("server certificate " + certificate.Thumbprint + " (" + certificate.Subject + ") chains to the test CA");
        }
    }

    static class Program
    {
        // The stable start of the ProtocolException message .NET raises for the framing Fault
        // UpgradeInvalid (SR.FramingUpgradeInvalid in System.ServiceModel.NetFramingBase):
        // "The requested upgrade is not supported by '<via>'. This could be due to mismatched
        // bindings (for example security enabled on the client and not on the server)."
        const string UpgradeInvalidMessage = "The requested upgrade is not supported by ";

        static int Main(string[] args)
        {
            // Exception messages in English whatever the locale: one is compared below.
            CultureInfo.DefaultThreadCurrentUICulture = CultureInfo.InvariantCulture;
            CultureInfo.CurrentUICulture = CultureInfo.InvariantCulture;
            string address = null, expectName = null, tlsCa = null, dnsIdentity = null;
            bool expectNotFound = false, expectUpgradeInvalid = false, tls13 = false;
            int calls = 1, size = 0, textSize = 0, timeout = 30;
            var thens = new List<(string Address, string Name)>();
            try {
                for (int i = 0; i < args.Length; i++) {
                    switch (args[i]) {
                    case "--address": address = args[++i]; break;
                    case "--expect-name": expectName = args[++i]; break;
                    case "--expect-endpoint-not-found": expectNotFound = true; break;
                    case "--expect-upgrade-invalid": expectUpgradeInvalid = true; break;
                    case "--tls-ca": tlsCa = args[++i]; break;
                    case "--dns-identity": dnsIdentity = args[++i]; break;
                    case "--tls13": tls13 = true; break;
                    case "--calls": calls = int.Parse(args[++i]); break;
                    case "--size": size = int.Parse(args[++i]); break;
                    case "--text-size": textSize = int.Parse(args[++i]); break;
                    case "--timeout": timeout = int.Parse(args[++i]); break;
                    case "--then": thens.Add((args[i + 1], args[i + 2])); i += 2; break;
                    default: throw new ArgumentException("unknown argument " + args[i]);
                    }
                }
                int expectations = (expectName != null ? 1 : 0) + (expectNotFound ? 1 : 0) + (expectUpgradeInvalid ? 1 : 0);
                if (address == null || expectations != 1)
                    throw new ArgumentException("need --address and one of --expect-name / --expect-endpoint-not-found / --expect-upgrade-invalid");
                if (thens.Count > 0 && expectName == null)
                    throw new ArgumentException("--then needs --expect-name");
            } catch (Exception e) {
                Console.Error.WriteLine("InteropClient: " + e.Message);
                return 2;
            }

            string what = ".NET client " + address + string.Concat(thens.Select(t => " then " + t.Address))
                + (tlsCa == null ? "" : tls13 ? " (TLS 1.2/1.3)" : " (TLS)");
            var watchdog = new Thread(() => {
                Thread.Sleep(timeout * 1000);
                Console.Out.WriteLine("FAIL " + what + ": no result within " + timeout + " s");
                Console.Out.Flush();
                Environment.Exit(3);
            });
            watchdog.IsBackground = true;
            watchdog.Start();

            // .NET sets SO_RCVBUF and SO_SNDBUF to ConnectionBufferSize (8 KiB by default). On
            // Linux loopback (MSS ~64 KiB) that small window stalls ~200 ms per 16 KiB, so a 1 MiB
            // reply takes ~13 s, with or without nettcpd in between. 64 KiB: ~50 ms.
            NetTcpBinding netTcp = Interop.Binding(timeout);
            if (tlsCa != null) {
                netTcp.Security.Mode = SecurityMode.Transport;
                netTcp.Security.Transport.ClientCredentialType = TcpClientCredentialType.None;
                if (tls13)
                    netTcp.Security.Transport.SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13;
            }
            var binding = new CustomBinding(netTcp);
            binding.Elements.Find<TcpTransportBindingElement>().ConnectionBufferSize = 64 * 1024;
            // One factory per address, all with this binding (see --then).
            var factories = new List<ChannelFactory<IWhoAmI>>();
            ChannelFactory<IWhoAmI> NewFactory(string uri)
            {
                var endpoint = dnsIdentity != null
                    ? new EndpointAddress(new Uri(uri), new DnsEndpointIdentity(dnsIdentity))
                    : new EndpointAddress(uri);
                var f = new ChannelFactory<IWhoAmI>(binding, endpoint);
                factories.Add(f);
                if (tlsCa != null) {
                    f.Credentials.ServiceCertificate.SslCertificateAuthentication = new X509ServiceCertificateAuthentication {
                        CertificateValidationMode = X509CertificateValidationMode.Custom,
                        CustomCertificateValidator = new TestCaValidator(X509Certificate2.CreateFromPem(File.ReadAllText(tlsCa))),
                        RevocationMode = X509RevocationMode.NoCheck,
                    };
                }
                return f;
            }
            ChannelFactory<IWhoAmI> factory;
            try {
                factory = NewFactory(address);
            } catch (Exception e) {
                Console.Out.WriteLine("FAIL " + what + ": client setup: " + Interop.Describe(e));
                return 1;
            }
            IWhoAmI channel = null;
            try {
                channel = factory.CreateChannel();
                ((IClientChannel) channel).Open();
                string first = null;
                for (int k = 1; k <= calls; k++) {
                    string text = "hello#" + k + (textSize > 0 ? ":" + new string('\u20ac', textSize) : "");
                    string reply = channel.Hello(text);
                    if (expectName != null && reply != expectName + ": " + text)
                        throw new Exception("Hello('" + text + "') returned '" + reply + "', want '" + expectName + ": " + text + "'");
                    // a long reply is shown by its start and length
                    first ??= reply.Length > 60 ? reply.Substring(0, 40) + "... (" + reply.Length + " chars)" : reply;
                }
                string bulk = "";
                if (size > 0) {
                    byte[] data = Interop.Pattern(size);
                    string diff = Interop.Compare(data, channel.RoundTrip(data));
                    if (diff != null) throw new Exception("RoundTrip(" + size + " bytes): " + diff);
                    bulk = ", RoundTrip of " + size + " bytes identical";
                }
                ((IClientChannel) channel).Close();
                string then = "";
                int n = calls;
                foreach (var (thenAddress, thenName) in thens) {
                    string text = "hello#" + ++n;
                    channel = NewFactory(thenAddress).CreateChannel();
                    ((IClientChannel) channel).Open();
                    string reply = channel.Hello(text);
                    if (reply != thenName + ": " + text)
                        throw new Exception(thenAddress + ": Hello('" + text + "') returned '" + reply + "', want '" + thenName + ": " + text + "'");
                    ((IClientChannel) channel).Close();
                    then += ", then 1 by " + thenName + " ('" + reply + "')";
                }
                foreach (var f in factories) f.Close();
                if (expectNotFound || expectUpgradeInvalid) {
                    Console.Out.WriteLine("FAIL " + what + ": call succeeded ('" + first + "'), want "
                        + (expectNotFound ? "EndpointNotFoundException" : "ProtocolException for UpgradeInvalid"));
                    return 1;
                }
                Console.Out.WriteLine("PASS " + what + ": " + calls + " call(s) answered by " + expectName + " ('" + first + "')" + bulk + then);
                return 0;
            } catch (Exception e) {
                if (channel != null) ((IClientChannel) channel).Abort();
                foreach (var f in factories) f.Abort();
                if (expectNotFound && e.GetType() == typeof(EndpointNotFoundException)) {
                    Console.Out.WriteLine("PASS " + what + ": refused with " + Interop.Describe(e));
                    return 0;
                }
                if (expectUpgradeInvalid && e.GetType() == typeof(ProtocolException) && e.Message.StartsWith(UpgradeInvalidMessage + "'" + address, StringComparison.Ordinal)) {
                    Console.Out.WriteLine("PASS " + what + ": refused with " + Interop.Describe(e));
                    return 0;
                }
                Console.Out.WriteLine("FAIL " + what + ": " + Interop.Describe(e));
                return 1;
            }
        }
    }
}
