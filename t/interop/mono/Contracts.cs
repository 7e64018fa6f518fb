// The contract and binding shared by the Mono service, the Mono client and the
// .NET client (t/interop/dotnet compiles this same file).
using System;
using System.ServiceModel;
using System.Xml;

namespace NettcpdInterop
{
    // Every service puts its own name into its replies, so a reply proves
    // which backend nettcpd routed the connection to.
    [ServiceContract(Namespace = "urn:nettcpd-interop")]
    public interface IWhoAmI
    {
        // Returns "<service name>: <text>".
        [OperationContract] string Hello(string text);
        // Returns the bytes it was sent, unchanged.
        [OperationContract] byte[] RoundTrip(byte[] data);
    }

    public static class Interop
    {
        // The framing Fault nettcpd sends for a Via that matches no route.
        public const string EndpointNotFoundFault =
            "http://schemas.microsoft.com/ws/2006/05/framing/faults/EndpointNotFound";
        // The framing Fault nettcpd sends when a route that terminates TLS gets no TLS upgrade.
        public const string UpgradeInvalidFault =
            "http://schemas.microsoft.com/ws/2006/05/framing/faults/UpgradeInvalid";

        // Plain net.tcp (no transport security: Mono has none), big enough for 1 MiB calls.
        public static NetTcpBinding Binding(int timeoutSeconds)
        {
            var b = new NetTcpBinding(SecurityMode.None);
            b.MaxReceivedMessageSize = 16 * 1024 * 1024;
            b.MaxBufferSize = 16 * 1024 * 1024;
            b.ReaderQuotas = XmlDictionaryReaderQuotas.Max;
            TimeSpan t = TimeSpan.FromSeconds(timeoutSeconds);
            b.OpenTimeout = t;
            b.SendTimeout = t;
            b.ReceiveTimeout = t;
            b.CloseTimeout = t;
            return b;
        }

        public static byte[] Pattern(int size)
        {
            var data = new byte[size];
            for (int i = 0; i < size; i++) data[i] = (byte) ((i * 7 + (i >> 8)) & 0xFF);
            return data;
        }

        // Returns null when equal, else what differs.
        public static string Compare(byte[] want, byte[] got)
        {
            if (got == null) return "null reply";
            if (got.Length != want.Length) return "length " + got.Length + " != " + want.Length;
            for (int i = 0; i < want.Length; i++)
                if (got[i] != want[i]) return "content differs at byte " + i;
            return null;
        }

        // The exception chain on one line.
        public static string Describe(Exception e)
        {
            var sb = new System.Text.StringBuilder();
            for (Exception x = e; x != null; x = x.InnerException) {
                if (x != e) sb.Append(" <- ");
                sb.Append(x.GetType().FullName).Append(": ").Append(x.Message.Replace("\r", "").Replace("\n", " "));
            }
            return sb.ToString();
        }
    }
}
