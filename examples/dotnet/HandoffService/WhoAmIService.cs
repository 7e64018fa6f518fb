// The operations of the interop contract IWhoAmI (t/interop/mono/Contracts.cs), served at
// the message level: the request's body is read with an XmlReader and the reply written
// with a BodyWriter, in the shape WCF's DataContractSerializer operation formatter uses
// (wrapper element OPResponse, result element OPResult, namespace urn:nettcpd-interop).
using System;
using System.ServiceModel;
using System.ServiceModel.Channels;
using System.Xml;

namespace Nettcpd.HandoffExample
{
    sealed class WhoAmIService
    {
        const string Ns = "urn:nettcpd-interop";
        const string ActionPrefix = Ns + "/IWhoAmI/";
        readonly string name;

        public WhoAmIService(string name) { this.name = name; }

        // The reply to request: Hello returns "NAME: text", RoundTrip its bytes; any other
        // action gets the SOAP fault ActionNotSupported, as a WCF service answers.
        public Message Handle(Message request)
        {
            string action = request.Headers.Action ?? "";
            Message reply;
            if (action == ActionPrefix + "Hello") {
                string text = ReadArgument(request, "Hello", "text", r => r.ReadElementContentAsString());
                reply = Reply(request, "Hello", w => w.WriteString(name + ": " + text));
            } else if (action == ActionPrefix + "RoundTrip") {
                byte[] data = ReadArgument(request, "RoundTrip", "data", r => r.ReadElementContentAsBase64());
                reply = Reply(request, "RoundTrip", w => { if (data != null) w.WriteBase64(data, 0, data.Length); });
            } else {
                var code = FaultCode.CreateSenderFaultCode(new FaultCode("ActionNotSupported", "http://www.w3.org/2005/08/addressing"));
                reply = Message.CreateMessage(request.Version, code,
                    "The action '" + action + "' is not an operation of IWhoAmI.", "http://www.w3.org/2005/08/addressing/fault");
            }
            reply.Headers.RelatesTo = request.Headers.MessageId;
            return reply;
        }

        // <OP xmlns=Ns><PARAM>...</PARAM></OP>: the one argument; a nil or absent one is default.
        static T ReadArgument<T>(Message request, string op, string param, Func<XmlDictionaryReader, T> read)
        {
            using XmlDictionaryReader r = request.GetReaderAtBodyContents();
            r.ReadStartElement(op, Ns);
            r.MoveToContent();
            if (!r.IsStartElement(param, Ns) || r.GetAttribute("nil", "http://www.w3.org/2001/XMLSchema-instance") == "true")
                return default;
            return read(r);
        }

        static Message Reply(Message request, string op, Action<XmlDictionaryWriter> writeResult)
            => Message.CreateMessage(request.Version, ActionPrefix + op + "Response", new ResultBody(op, writeResult));

        sealed class ResultBody : BodyWriter
        {
            readonly string op;
            readonly Action<XmlDictionaryWriter> writeResult;

            public ResultBody(string op, Action<XmlDictionaryWriter> writeResult) : base(true)
            {
                this.op = op;
                this.writeResult = writeResult;
            }

            protected override void OnWriteBodyContents(XmlDictionaryWriter w)
            {
                w.WriteStartElement(op + "Response", Ns);
                w.WriteStartElement(op + "Result", Ns);
                writeResult(w);
                w.WriteEndElement();
                w.WriteEndElement();
            }
        }
    }
}
