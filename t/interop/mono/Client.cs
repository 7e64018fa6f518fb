// InteropClient.exe: the Mono WCF client. Prints exactly one PASS or FAIL line.
//
//   mono InteropClient.exe --address URI --expect-name NAME [--calls N] [--size BYTES] [--timeout S]
//       N calls of Hello on one channel, each reply must come from service NAME,
//       then (with --size) one RoundTrip of BYTES bytes, compared byte for byte.
//   mono InteropClient.exe --address URI --expect-endpoint-not-found [--timeout S]
//       the connection must be refused with the framing Fault EndpointNotFound,
//       which Mono surfaces as a plain FaultException whose Message is the fault URI.
//   mono InteropClient.exe --address URI --expect-upgrade-invalid [--timeout S]
//       the same with the framing Fault UpgradeInvalid (a route that requires TLS,
//       which this client cannot do: Mono's net.tcp has no transport security).
//
// Exit 0 PASS, 1 FAIL, 2 bad arguments, 3 watchdog (no result within --timeout).
using System;
using System.ServiceModel;
using System.Threading;

namespace NettcpdInterop
{
    static class ClientMain
    {
        static int Main(string[] args)
        {
            string address = null, expectName = null;
            bool expectNotFound = false, expectUpgradeInvalid = false;
            int calls = 1, size = 0, timeout = 30;
            try {
                for (int i = 0; i < args.Length; i++) {
                    switch (args[i]) {
                    case "--address": address = args[++i]; break;
                    case "--expect-name": expectName = args[++i]; break;
                    case "--expect-endpoint-not-found": expectNotFound = true; break;
                    case "--expect-upgrade-invalid": expectUpgradeInvalid = true; break;
                    case "--calls": calls = int.Parse(args[++i]); break;
                    case "--size": size = int.Parse(args[++i]); break;
                    case "--timeout": timeout = int.Parse(args[++i]); break;
                    default: throw new ArgumentException("unknown argument " + args[i]);
                    }
                }
                int expectations = (expectName != null ? 1 : 0) + (expectNotFound ? 1 : 0) + (expectUpgradeInvalid ? 1 : 0);
                if (address == null || expectations != 1)
                    throw new ArgumentException("need --address and one of --expect-name / --expect-endpoint-not-found / --expect-upgrade-invalid");
            } catch (Exception e) {
                Console.Error.WriteLine("InteropClient: " + e.Message);
                return 2;
            }

            string what = "mono client " + address;
            var watchdog = new Thread(() => {
                Thread.Sleep(timeout * 1000);
                Console.Out.WriteLine("FAIL " + what + ": no result within " + timeout + " s");
                Console.Out.Flush();
                Environment.Exit(3);
            });
            watchdog.IsBackground = true;
            watchdog.Start();

            var factory = new ChannelFactory<IWhoAmI>(Interop.Binding(timeout), new EndpointAddress(address));
            IWhoAmI channel = null;
            try {
                channel = factory.CreateChannel();
                ((IClientChannel) channel).Open();
                string first = null;
                for (int k = 1; k <= calls; k++) {
                    string text = "hello#" + k;
                    string reply = channel.Hello(text);
                    if (expectName != null && reply != expectName + ": " + text)
                        throw new Exception("Hello('" + text + "') returned '" + reply + "', want '" + expectName + ": " + text + "'");
                    if (first == null) first = reply;
                }
                string bulk = "";
                if (size > 0) {
                    byte[] data = Interop.Pattern(size);
                    string diff = Interop.Compare(data, channel.RoundTrip(data));
                    if (diff != null) throw new Exception("RoundTrip(" + size + " bytes): " + diff);
                    bulk = ", RoundTrip of " + size + " bytes identical";
                }
                ((IClientChannel) channel).Close();
                factory.Close();
                if (expectNotFound || expectUpgradeInvalid) {
                    Console.Out.WriteLine("FAIL " + what + ": call succeeded ('" + first + "'), want "
                        + (expectNotFound ? "EndpointNotFound" : "UpgradeInvalid") + " fault");
                    return 1;
                }
                Console.Out.WriteLine("PASS " + what + ": " + calls + " call(s) answered by " + expectName + " ('" + first + "')" + bulk);
                return 0;
            } catch (Exception e) {
                if (channel != null) ((IClientChannel) channel).Abort();
                factory.Abort();
                string wantFault = expectNotFound ? Interop.EndpointNotFoundFault
                    : expectUpgradeInvalid ? Interop.UpgradeInvalidFault : null;
                if (wantFault != null && e.GetType() == typeof(FaultException) && e.Message == wantFault) {
                    Console.Out.WriteLine("PASS " + what + ": refused with " + e.GetType().FullName + ": " + e.Message);
                    return 0;
                }
                Console.Out.WriteLine("FAIL " + what + ": " + Interop.Describe(e));
                return 1;
            }
        }
    }
}
