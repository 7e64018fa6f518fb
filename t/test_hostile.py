"""A hostile client (and a misbehaving service) against session following
and the backend pool: every preamble nettcpd forwards is parsed, routed
and logged with its Via; a record with no place in a followed session
closes the connection instead of turning it into a pipe; no byte crosses
from one session to another through a pooled connection; idle client
connections have a lifetime and give way at max_connections.  Each test
runs in splice and copy modes."""

import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (Backend, Daemon, FORWARD_METHODS, fault_record, mbint,  # noqa: E402
                          preamble, recv_exact, recv_until_close, run_tests,
                          sized_envelope, wait_for)
from test_sessions import Reader, service, session  # noqa: E402

PKI = tempfile.mkdtemp(prefix="nettcpd-hostile-pki-")


def certificate():
    cert, key = os.path.join(PKI, "c.pem"), os.path.join(PKI, "c.key")
    if not os.path.exists(cert):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-days", "30", "-subj", "/CN=localhost", "-keyout", key,
                        "-out", cert], check=True, capture_output=True)
    return cert, key


def daemon(forward, routes, extra="", tls_routes=()):
    """One worker, debug log; routes: (name, via, backend); tls_routes are
    terminating routes (name, via, backend).  No settle period: the next
    session may take the backend connection at once, and meet what a
    hostile service sends late (t/test_pool.py tests the settle period)."""
    lines = ["[global]", "listen = 127.0.0.1:{port}", f"forward = {forward}",
             "log_level = debug", "workers = 1", "backend_pool_settle = 0",
             extra, ""]
    for name, via, backend in routes:
        lines += [f"[{name}]", f"via = {via}", f"backend = {backend}", ""]
    for name, via, backend in tls_routes:
        cert, key = certificate()
        lines += [f"[{name}]", f"via = {via}", f"backend = {backend}",
                  "tls = terminate", f"tls_cert = {cert}", f"tls_key = {key}", ""]
    d = Daemon(raw_config="")
    with open(d.config, "w") as f:
        f.write("\n".join(lines).replace("{port}", str(d.port)))
    return d


def vias(backend):
    """The Vias of the preambles a service received."""
    return [p[7:7 + p[6]].decode() for _, p in backend.sessions]


def unsized_envelope(payload, chunk=40000):
    out = b"\x05"
    for i in range(0, len(payload), chunk):
        piece = payload[i:i + chunk]
        out += mbint(len(piece)) + piece
    return out + b"\x00"


def read_unsized(r):
    """The chunks of an Unsized Envelope whose 05 was read, joined."""
    out = bytearray()
    while True:
        n = r.mbint()
        if n == 0:
            return bytes(out)
        out += r.take(n)


def singleton_service(name):
    """Streamed WCF: Ack, one Unsized Envelope each way, End each way, then
    the next preamble on the same connection."""
    def handler(c, backend):
        r = Reader(c)
        while True:
            pre = r.preamble()
            if pre is None:
                return
            with backend.lock:
                backend.sessions.append((0, pre))
            c.sendall(b"\x0b")
            if pre[4] == 2:  # a duplex session after all: as service() does
                while True:
                    t, payload = r.record()
                    if t != 0x06:
                        break
                    c.sendall(sized_envelope(name.encode() + b":" + payload))
                c.sendall(b"\x07")
                continue
            assert r.take(1) == b"\x05"
            body = read_unsized(r)
            assert r.take(1) == b"\x07"
            c.sendall(unsized_envelope(name.encode() + b":" + body) + b"\x07")
    b = Backend(handler=handler, name=name)
    b.sessions = []
    return b


def test_singleton_sessions_are_followed():
    """Mode 1 (streamed transfer): the session is followed through its
    Unsized Envelope's chunks, large ones spliced, to End both ways; the
    next preamble on the connection is routed, not piped."""
    body = os.urandom(300000)
    for forward in FORWARD_METHODS:
        a, b = singleton_service("A"), service("B")
        with daemon(forward, [("a", "net.tcp://+/A", a.addr),
                              ("b", "net.tcp://+/B", b.addr)]) as d:
            s = d.connect()
            r = Reader(s)
            for _ in range(2):
                s.sendall(preamble("net.tcp://h/A", mode=1))
                assert r.record()[0] == 0x0B
                s.sendall(unsized_envelope(body) + b"\x07")
                assert r.take(1) == b"\x05"
                assert read_unsized(r) == b"A:" + body
                assert r.take(1) == b"\x07"
            assert session(s, "net.tcp://h/B", reader=r) == [b"B:hello"]
            s.sendall(preamble("net.tcp://h/Admin", mode=1))
            f = fault_record("EndpointNotFound")
            assert recv_exact(s, len(f)) == f
            s.close()
            assert vias(a) == ["net.tcp://h/A"] * 2 and vias(b) == ["net.tcp://h/B"]
            assert a.accepted == 1, a.accepted  # pooled between the two
        a.close()
        b.close()


def test_early_envelope_then_other_vias_are_routed():
    """The first envelope in the same write as the preamble (legal: the
    client need not wait for the Ack).  The session is followed from that
    byte on, so the client's next preambles on the connection are routed:
    /B to B, /Admin (no route) gets EndpointNotFound, and /Secure, which
    requires TLS, is refused in clear although its backend is A's."""
    for forward in FORWARD_METHODS:
        a, b = service("A"), service("B")
        with daemon(forward, [("public", "net.tcp://+/Public", a.addr),
                              ("b", "net.tcp://+/B", b.addr)],
                    tls_routes=[("secure", "net.tcp://+/Secure", a.addr)]) as d:
            for second, want in (("net.tcp://h/B", "B"),
                                 ("net.tcp://h/Admin", "EndpointNotFound"),
                                 ("net.tcp://h/Secure", "UpgradeInvalid")):
                s = d.connect()
                r = Reader(s)
                s.sendall(preamble("net.tcp://h/Public") + sized_envelope(b"early"))
                assert r.record()[0] == 0x0B
                assert r.record() == (0x06, b"A:early")
                s.sendall(b"\x07")
                assert r.record()[0] == 0x07
                if want == "B":
                    assert session(s, second, reader=r) == [b"B:hello"]
                else:
                    s.sendall(preamble(second))
                    f = fault_record(want)
                    assert bytes(r.buf) + recv_exact(s, len(f) - len(r.buf)) == f, forward
                s.close()
            d.wait_log("via 'net.tcp://h/B' route [b]: forwarding")
            assert vias(a) == ["net.tcp://h/Public"] * 3, (forward, vias(a))
            assert vias(b) == ["net.tcp://h/B"]
        a.close()
        b.close()


def test_whole_sessions_pipelined_in_one_write():
    """Preamble, envelopes, End and the next session's preamble in one
    write: each preamble reaches only the service its Via routes to."""
    for forward in FORWARD_METHODS:
        a, b = service("A"), service("B")
        with daemon(forward, [("a", "net.tcp://+/A", a.addr),
                              ("b", "net.tcp://+/B", b.addr)]) as d:
            s = d.connect()
            r = Reader(s)
            s.sendall(preamble("net.tcp://h/A") + sized_envelope(b"1") +
                      sized_envelope(b"2") + b"\x07" + preamble("net.tcp://h/B") +
                      sized_envelope(b"3") + b"\x07")
            assert [r.record() for _ in range(4)] == [
                (0x0B, None), (0x06, b"A:1"), (0x06, b"A:2"), (0x07, None)]
            assert [r.record() for _ in range(3)] == [
                (0x0B, None), (0x06, b"B:3"), (0x07, None)]
            s.close()
            assert vias(a) == ["net.tcp://h/A"] and vias(b) == ["net.tcp://h/B"]
        a.close()
        b.close()


def recording_service(name):
    """Acks the preamble, then records every byte it reads until EOF."""
    def handler(c, backend):
        Reader(c).preamble()
        c.sendall(b"\x0b")
        got = bytearray()
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                got += chunk
        except OSError:
            pass
        with backend.lock:
            backend.got.append(bytes(got))
    b = Backend(handler=handler, name=name)
    b.got = []
    return b


def test_record_out_of_place_resets_instead_of_piping():
    """A record no duplex session holds, from the client: the connection is
    reset on both sides and the service never sees the byte that does not
    fit or anything after it; one log line names the record."""
    cases = [
        (b"\x05\x03abc\x00", 0x05, b""),                  # unsized envelope
        (preamble("net.tcp://h/Admin"), 0x00, b""),       # a preamble before End
        (b"\x0c", 0x0C, b""),
        # a size over 2^31-1: given up at its 5th byte, the bytes before
        # it were already on their way
        (b"\x06\xff\xff\xff\xff\x7f", 0x06, b"\x06\xff\xff\xff\xff"),
    ]
    for forward in FORWARD_METHODS:
        for bad, rtype, before in cases:
            a = recording_service("A")
            with daemon(forward, [("a", "net.tcp://+/A", a.addr)]) as d:
                s = d.connect()
                s.sendall(preamble("net.tcp://h/A"))
                assert recv_exact(s, 1) == b"\x0b"
                s.sendall(sized_envelope(b"fine") + bad + sized_envelope(b"more"))
                data, how = recv_until_close(s)
                assert data == b"" and how in ("reset", "eof"), (data, how)
                wait_for(lambda: a.got, what="the service's end of stream")
                assert a.got == [sized_envelope(b"fine") + before], (forward, bad, a.got)
                d.wait_log("client sent record 0x%02x, which has no place" % rtype)
                s.close()
            a.close()


def test_stray_bytes_after_end_never_reach_another_client():
    """The service answers End, then 50 ms later sends one more envelope.
    The next client, on the pooled connection, must get only its own
    answers: the connection is discarded and the session redialled."""
    def handler(c, backend):
        r = Reader(c)
        while True:
            if r.preamble() is None:
                return
            c.sendall(b"\x0b")
            while True:
                t, payload = r.record()
                if t == 0x06:
                    c.sendall(sized_envelope(b"A:" + payload))
                elif t == 0x07:
                    c.sendall(b"\x07")
                    time.sleep(0.05)
                    c.sendall(sized_envelope(b"STRAY"))
                    break
                else:
                    return
    for forward in FORWARD_METHODS:
        a = Backend(handler=handler, name="A")
        with daemon(forward, [("a", "net.tcp://+/A", a.addr)]) as d:
            for i in range(20):
                s = d.connect()
                assert session(s, "net.tcp://h/A", [b"%d" % i]) == [b"A:%d" % i]
                s.close()
                if i % 2:
                    time.sleep(0.06)  # let the stray arrive while pooled
            # the stray was seen and never forwarded
            d.wait_log("before answering, redialling")
        a.close()


def test_pipelined_preamble_routed_afresh_when_the_service_faults_or_closes():
    """The client sends End and, in the same write, its next preamble; the
    service answers the End with a Fault, or just closes.  The next
    preamble is not this service's: it never gets there, and is routed
    afresh, to B."""
    def handler(how):
        def h(c, backend):
            r = Reader(c)
            r.preamble()
            c.sendall(b"\x0b")
            assert r.record()[0] == 0x07
            if how == "fault":
                c.sendall(fault_record("MaxMessageSizeExceededFault"))
            c.shutdown(socket.SHUT_WR)
            rest = bytearray()
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                rest += chunk
            with backend.lock:
                backend.rest = bytes(rest)
        return h
    for forward in FORWARD_METHODS:
        for how in ("fault", "fin"):
            a = Backend(handler=handler(how), name="A")
            a.rest = None
            b = service("B")
            with daemon(forward, [("a", "net.tcp://+/A", a.addr),
                                  ("b", "net.tcp://+/B", b.addr)]) as d:
                s = d.connect()
                r = Reader(s)
                s.sendall(preamble("net.tcp://h/A"))
                assert r.record()[0] == 0x0B
                s.sendall(b"\x07" + preamble("net.tcp://h/B"))
                if how == "fault":
                    assert r.record() == (0x08, fault_record(
                        "MaxMessageSizeExceededFault")[2:]), (forward, how)
                assert r.record()[0] == 0x0B, (forward, how)
                s.sendall(sized_envelope(b"next"))
                assert r.record() == (0x06, b"B:next")
                s.sendall(b"\x07")
                assert r.record()[0] == 0x07
                wait_for(lambda: a.rest is not None, what="the service's end of stream")
                assert a.rest == b"", (forward, how, a.rest)
                assert vias(b) == ["net.tcp://h/B"]
                d.wait_log("the service ended without End; the client's next "
                           "preamble is routed")
                s.close()
            a.close()
            b.close()


def test_service_fin_without_a_next_preamble_reaches_the_client():
    """A service that closes after the client's End, when the client has
    not sent more (Mono does this): the client sees the end of stream."""
    def handler(c, backend):
        r = Reader(c)
        r.preamble()
        c.sendall(b"\x0b")
        r.record()
    for forward in FORWARD_METHODS:
        a = Backend(handler=handler, name="A")
        with daemon(forward, [("a", "net.tcp://+/A", a.addr)]) as d:
            s = d.connect()
            s.sendall(preamble("net.tcp://h/A"))
            assert recv_exact(s, 1) == b"\x0b"
            s.sendall(b"\x07")
            assert recv_until_close(s) == (b"", "eof")
            s.close()
        a.close()


def test_fault_instead_of_ack_reaches_the_client():
    def handler(c, backend):
        Reader(c).preamble()
        c.sendall(fault_record("EndpointUnavailable"))
        c.close()
    for forward in FORWARD_METHODS:
        a = Backend(handler=handler, name="A")
        with daemon(forward, [("a", "net.tcp://+/A", a.addr)]) as d:
            s = d.connect()
            s.sendall(preamble("net.tcp://h/A"))
            data, _ = recv_until_close(s)
            assert data == fault_record("EndpointUnavailable"), data
            s.close()
        a.close()


def test_idle_connections_give_way_at_max_connections():
    """Four clients finish a session and keep their connections, as the
    WCF client's pool does; with max_connections = 4 a fifth client is
    still served: the connection idle longest is closed for it."""
    for forward in FORWARD_METHODS:
        a = service("A")
        with daemon(forward, [("a", "net.tcp://+/A", a.addr)],
                    extra="max_connections = 4") as d:
            idle = []
            for i in range(4):
                s = d.connect()
                assert session(s, "net.tcp://h/A", [b"%d" % i]) == [b"A:%d" % i]
                idle.append(s)
            s = d.connect(timeout=3)
            assert session(s, "net.tcp://h/A", [b"fifth"]) == [b"A:fifth"]
            # the oldest idle connection was the one closed
            assert idle[0].recv(1) == b""
            d.wait_log("max_connections (4) reached, closed the connection idle longest")
            for t in idle[1:] + [s]:
                t.close()
        a.close()


if __name__ == "__main__":
    run_tests(globals())
