// InteropService.exe: a Mono WCF service behind nettcpd.
//
//   mono InteropService.exe --name NAME --address net.tcp://127.0.0.1:PUBLIC/Path
//                           --listen net.tcp://127.0.0.1:PRIVATE/Path
//
// The endpoint address is the PUBLIC URI (clients put it into the SOAP To header,
// which the service checks); listenUri is the private loopback port nettcpd
// forwards to, with the same path. Prints "LISTENING ..." once open, then serves
// until killed. It never calls ServiceHost.Close(): that aborts Mono 6.8.
using System;
using System.ServiceModel;
using System.Threading;

namespace NettcpdInterop
{
    [ServiceBehavior(InstanceContextMode = InstanceContextMode.Single, ConcurrencyMode = ConcurrencyMode.Multiple)]
    public class WhoAmIService : IWhoAmI
    {
        readonly string name;
        public WhoAmIService(string name) { this.name = name; }
        public string Hello(string text) { return name + ": " + text; }
        public byte[] RoundTrip(byte[] data) { return data; }
    }

    static class ServiceMain
    {
        static int Main(string[] args)
        {
            string name = null, address = null, listen = null;
            for (int i = 0; i + 1 < args.Length; i += 2) {
                switch (args[i]) {
                case "--name": name = args[i + 1]; break;
                case "--address": address = args[i + 1]; break;
                case "--listen": listen = args[i + 1]; break;
                default: Console.Error.WriteLine("unknown argument " + args[i]); return 2;
                }
            }
            if (name == null || address == null || listen == null || args.Length % 2 != 0) {
                Console.Error.WriteLine("usage: InteropService.exe --name NAME --address PUBLIC-URI --listen PRIVATE-URI");
                return 2;
            }
            try {
                var host = new ServiceHost(new WhoAmIService(name));
                host.AddServiceEndpoint(typeof(IWhoAmI), Interop.Binding(300), new Uri(address), new Uri(listen));
                host.Open();
            } catch (Exception e) {
                Console.Out.WriteLine("FAIL service " + name + " could not open: " + Interop.Describe(e));
                return 1;
            }
            Console.Out.WriteLine("LISTENING " + name + " address=" + address + " listenUri=" + listen);
            Console.Out.Flush();
            Thread.Sleep(Timeout.Infinite);
            return 0;
        }
    }
}
