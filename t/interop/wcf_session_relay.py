#!/usr/bin/env python3
"""wcf_session_relay.py: the connection handling of a WCF net.tcp server, in front of a Mono service.

    python3 wcf_session_relay.py --name NAME --listen HOST:PORT
                                 --service HOST:PORT --service-via URI [--timeout S]

Why: nettcpd routes each session of a pooled client connection afresh, and pools the
backend connection when a session ends. Proving that with the real .NET client needs a
service that behaves like a WCF server (ConnectionDemuxer.ReuseConnection): it answers the
client's End (0x07) with End and then reads the next preamble on the same connection.
Mono's net.tcp service does neither (it never sends End, closes the connection ~50 ms
after the client's End, and never reads a second preamble), and no .NET Framework WCF or
CoreWCF server can run here. This relay plays that part; the messages themselves are still
served by a real Mono service behind it.

Per client connection, for each session on it ([MC-NMF] duplex session, no upgrade):

  1. read the preamble: Version, Mode (must be 2, duplex), Via, Encoding, Preamble End;
  2. open a fresh session to the Mono service: a new TCP connection and the same preamble,
     but with the Via replaced by --service-via (the service's own listen URI); wait for
     its Preamble Ack (0x0B), then answer the client's preamble with 0x0B;
  3. relay each Sized Envelope (0x06) of the client to the service and the service's reply
     envelope back (request-reply contracts only: one reply per request);
  4. on the client's End: send End to the service and close that connection, then answer
     End, and go back to 1 on the same client connection.

One Mono session serves one whole client session, not one envelope: with the binary
session encoding (0x08) both sides build a dictionary of strings over the session, so an
envelope cannot be understood outside the session it was sent in. A Fault record from the
service is passed on, an upgrade request, another mode or an unexpected record is refused
with a framing Fault, and either way the client connection is then closed.

Output, one line each, flushed at once (the interop test reads them):

  LISTENING relay NAME on HOST:PORT for SERVICE-VIA
  relay NAME conn N from ADDR:PORT session K: Via 'URI'
  relay NAME conn N session K: M message(s) relayed, End answered
  relay NAME conn N closed by the client after K session(s): Via 'URI1' 'URI2' ...
  relay NAME conn N error: WHAT

Each line after LISTENING starts with the time (UTC, HH:MM:SS.mmm), as nettcpd's do.

N counts client connections from 1, K sessions on one connection from 1. Runs until killed.
"""
import argparse
import socket
import sys
import threading
import time

FAULT_PREFIX = "http://schemas.microsoft.com/ws/2006/05/framing/faults/"
PREAMBLE_MAX = 64 * 1024      # bytes of preamble records; WCF's own limit is far below
ENVELOPE_MAX = 64 * 1024 * 1024


class Closed(Exception):
    """The peer closed (FIN or reset) where a record was expected."""


class ServiceFault(Exception):
    """The service sent a Fault record: args are its text and the record, for the client."""


class Refused(Exception):
    """The client did something a WCF server refuses; args[0] is the framing Fault name."""


class Reader:
    """Reads [MC-NMF] records from a socket, keeping what it has read beyond a record."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self, n):
        while len(self.buf) < n:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                raise Closed("reset")
            if not data:
                raise Closed("end of stream")
            self.buf += data

    def take(self, n):
        self._fill(n)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def varint(self):
        """Returns (value, its encoded bytes): at most 5 bytes, 7 bits each, low first."""
        raw = bytearray()
        value = 0
        for shift in range(0, 35, 7):
            b = self.take(1)[0]
            raw.append(b)
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value, bytes(raw)
        raise Refused("InvalidRecord")

    def record(self, limit):
        """Returns (type, the whole record as sent, its payload or None)."""
        t = self.take(1)[0]
        if t in (0x07, 0x0B, 0x0C):                  # End, Preamble Ack, Preamble End
            return t, bytes([t]), None
        if t in (0x01, 0x03):                        # Mode, Known Encoding
            data = self.take(1)
            return t, bytes([t]) + data, data
        if t == 0x00:                                # Version
            data = self.take(2)
            return t, bytes([t]) + data, data
        if t in (0x02, 0x04, 0x06, 0x08, 0x09):      # Via, Extensible Encoding, Sized
            size, raw = self.varint()                # Envelope, Fault, Upgrade Request
            if size > limit:
                raise Refused("MaxMessageSizeExceeded" if t == 0x06 else "InvalidRecord")
            data = self.take(size)
            return t, bytes([t]) + raw + data, data
        raise Refused("InvalidRecord")


def encode_string(t, text):
    data = text.encode("utf-8")
    size = bytearray()
    n = len(data)
    while True:
        size.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            break
    return bytes([t]) + bytes(size) + data


class Relay:
    def __init__(self, args):
        self.name = args.name
        host, port = args.service.rsplit(":", 1)
        self.service = (host, int(port))
        self.service_via = args.service_via
        self.timeout = args.timeout
        self.lock = threading.Lock()

    def log(self, text):
        with self.lock:
            now = time.time()
            stamp = time.strftime("%H:%M:%S", time.gmtime(now)) + ".%03d" % (now % 1 * 1000)
            print("%s relay %s %s" % (stamp, self.name, text), flush=True)

    def read_preamble(self, reader):
        """Returns (Via, the encoding record) of the next preamble, or None at end of stream."""
        via = encoding = None
        try:
            t, _, data = reader.record(PREAMBLE_MAX)
        except Closed:
            return None                              # between sessions: a normal close
        if t != 0x00:
            raise Refused("InvalidRecord")
        if data[0] != 1:
            raise Refused("UnsupportedVersion")
        while True:
            t, raw, data = reader.record(PREAMBLE_MAX)
            if t == 0x01:
                if data[0] != 2:
                    raise Refused("UnsupportedMode")
            elif t == 0x02:
                via = data.decode("utf-8", "replace")
            elif t in (0x03, 0x04):
                encoding = raw
            elif t == 0x09:
                raise Refused("UpgradeInvalid")
            elif t == 0x0C:
                break
            else:
                raise Refused("InvalidRecord")
        if via is None or encoding is None:
            raise Refused("InvalidRecord")
        return via, encoding

    @staticmethod
    def service_record(reader):
        """The service's next record; its close or a malformed record is the service's error."""
        try:
            return reader.record(ENVELOPE_MAX)
        except (Closed, Refused) as e:
            raise RuntimeError("service: %s" % (e.args[0] if isinstance(e, Closed) else "malformed record"))

    def open_service(self, encoding):
        """A fresh session to the Mono service; returns its socket and reader once it has acked."""
        sock = socket.create_connection(self.service, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"\x00\x01\x00" b"\x01\x02" + encode_string(0x02, self.service_via)
                     + encoding + b"\x0c")
        reader = Reader(sock)
        t, raw, data = self.service_record(reader)
        if t != 0x0B:
            sock.close()
            if t == 0x08:
                raise ServiceFault(data.decode("utf-8", "replace"), raw)
            raise RuntimeError("service answered the preamble with record 0x%02x" % t)
        return sock, reader

    def close_service(self, sock, reader):
        """End the service's session cleanly: End, FIN, then wait for its close."""
        try:
            sock.sendall(b"\x07")
            sock.shutdown(socket.SHUT_WR)
            while True:
                reader.buf.clear()
                reader._fill(1)                      # Mono sends nothing more; until its FIN
        except (Closed, OSError):
            pass
        finally:
            sock.close()

    def serve(self, client, conn_id, peer):
        who = "conn %d" % conn_id
        reader = Reader(client)
        vias = []
        service = None
        try:
            while True:
                preamble = self.read_preamble(reader)
                if preamble is None:
                    self.log("%s closed by the client after %d session(s): Via %s"
                             % (who, len(vias), " ".join("'%s'" % v for v in vias) or "none"))
                    return
                via, encoding = preamble
                vias.append(via)
                self.log("%s from %s:%d session %d: Via '%s'" % (who, peer[0], peer[1], len(vias), via))
                service = self.open_service(encoding)
                client.sendall(b"\x0b")
                messages = 0
                while True:
                    t, raw, data = reader.record(ENVELOPE_MAX)
                    if t == 0x07:
                        break
                    if t != 0x06:
                        raise Refused("InvalidRecord")
                    service[0].sendall(raw)
                    st, sraw, sdata = self.service_record(service[1])
                    if st == 0x08:
                        raise ServiceFault(sdata.decode("utf-8", "replace"), sraw)
                    if st != 0x06:
                        raise RuntimeError("service sent record 0x%02x instead of a reply" % st)
                    client.sendall(sraw)
                    messages += 1
                self.close_service(*service)
                service = None
                client.sendall(b"\x07")
                self.log("%s session %d: %d message(s) relayed, End answered" % (who, len(vias), messages))
        except (Refused, ServiceFault) as e:
            if isinstance(e, Refused):
                self.log("%s error: refused with Fault %s" % (who, e.args[0]))
                record = encode_string(0x08, FAULT_PREFIX + e.args[0])
            else:
                self.log("%s error: service sent Fault %s, passed on" % (who, e.args[0]))
                record = e.args[1]
            try:
                client.sendall(record)
            except OSError:
                pass
        except Closed as e:
            self.log("%s error: %s from the client after %d preamble(s)" % (who, e.args[0], len(vias)))
        except (OSError, RuntimeError) as e:
            self.log("%s error: %s" % (who, e))
        finally:
            if service is not None:
                service[0].close()
            client.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True, help="name in every output line")
    ap.add_argument("--listen", required=True, help="HOST:PORT to accept clients on")
    ap.add_argument("--service", required=True, help="HOST:PORT of the Mono service")
    ap.add_argument("--service-via", required=True, help="the Via sent to the Mono service")
    ap.add_argument("--timeout", type=float, default=30, help="seconds to wait for the service")
    args = ap.parse_args()
    relay = Relay(args)
    host, port = args.listen.rsplit(":", 1)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, int(port)))
        listener.listen(16)
    except OSError as e:
        print("FAIL relay %s cannot listen on %s: %s" % (args.name, args.listen, e), flush=True)
        return 1
    print("LISTENING relay %s on %s for %s" % (args.name, args.listen, args.service_via), flush=True)
    conn_id = 0
    while True:
        client, peer = listener.accept()
        conn_id += 1
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=relay.serve, args=(client, conn_id, peer), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
