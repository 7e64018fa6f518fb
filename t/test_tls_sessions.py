"""Sessions inside the TLS that nettcpd terminates, followed as in clear.

The WCF client (SecurityMode.Transport) pools its TCP connections: after
End both ways inside TLS it abandons that TLS stream, without close_notify,
and sends its next session's clear preamble, with a new Upgrade Request
and a new handshake, on the same TCP connection.  nettcpd must read that
preamble from the raw socket, route it afresh (another terminating route,
another certificate, a plain route, or a fault) and pool the finished
session's backend connection.  A hostile client gets no further: bytes
after its End inside TLS, or a record out of place, reset the connection
before they reach a service.

The client is Python's ssl module over a memory BIO, so the test decides
exactly which bytes go inside TLS and which in clear.  The TLS pumps copy
whatever forward is set to, so these tests run once."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (Backend, fault_record, preamble, recv_exact,  # noqa: E402
                          recv_until_close, run_tests, sized_envelope, wait_for)
from test_sessions import Reader, service  # noqa: E402
from test_tls import (PKI, TLSClient, client_context, daemon_with,  # noqa: E402
                      make_pki, openssl, tls_route)
from test_hostile import vias  # noqa: E402


CONTEXT = None   # the client's one context, in which a session resumes
TLS_CLIENTS = []  # every TLS client made, the newest last


class RecordTLSClient(TLSClient):
    """Takes the socket's bytes one TLS record at a time, as a client's TLS
    layer does that leaves the raw stream to the framing after it: bytes
    nettcpd sends in clear after the last record stay in the socket."""

    def _receive(self):
        head = recv_exact(self.sock, 5)
        size = int.from_bytes(head[3:5], "big") if len(head) == 5 else 0
        body = recv_exact(self.sock, size)
        self.incoming.write(head + body)
        if len(head) < 5 or len(body) < size:
            self.incoming.write_eof()


def recorder(name):
    """Acks at once, then records every byte it reads, the preamble too,
    until the connection ends, however it ends."""
    def handler(c, backend):
        got = bytearray()
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                if not got:
                    c.sendall(b"\x0b")
                got += chunk
        except OSError:
            pass
        finally:
            with backend.lock:
                backend.got.append(bytes(got))
    b = Backend(handler=handler, name=name)
    b.got = []
    return b


def second_certificate():
    """Another certificate for localhost from the same CA, with its own key:
    a client can tell which route's certificate it was given."""
    if not os.path.exists(os.path.join(PKI, "second.pem")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                "-keyout", "second.key", "-out", "second.csr")
        openssl("x509", "-req", "-in", "second.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "30", "-extfile", "san.ext", "-out", "second.pem")
    return "second.pem", "second.key"


def upgraded(s, via, session=None):
    """Clear preamble with the Upgrade Request, then the handshake, offering
    session to resume; returns the TLS client."""
    global CONTEXT
    s.sendall(preamble(via, upgrade="application/ssl-tls"))
    assert recv_exact(s, 1) == b"\x0a"
    CONTEXT = CONTEXT or client_context()   # a session resumes in its own
    TLS_CLIENTS.append(RecordTLSClient(s, context=CONTEXT, session=session))
    return TLS_CLIENTS[-1]


def tls_session(s, via, payloads, name):
    """One whole duplex session inside TLS, as WCF runs it; returns the
    certificate the server showed.  The TLS stream is then abandoned."""
    t = upgraded(s, via)
    t.send(b"\x0c")
    r = Reader(t)
    assert r.record()[0] == 0x0B
    for p in payloads:
        t.send(sized_envelope(p))
        assert r.record() == (0x06, name + b":" + p)
    t.send(b"\x07")
    assert r.record()[0] == 0x07
    assert not r.buf
    return t.obj.getpeercert(binary_form=True)


def two_routes(a, b, extra=""):
    cert, key = second_certificate()
    return daemon_with(tls_route("one", "net.tcp://+/One", a.addr) +
                       tls_route("two", "net.tcp://+/Two", b.addr, cert=cert, key=key) +
                       f"[plain]\nvia = net.tcp://+/Plain\nbackend = {a.addr}\n",
                       "workers = 1\nbackend_pool_settle = 0\n" + extra)


def test_pooled_connection_carries_tls_sessions_to_two_routes():
    """One TCP connection: a TLS session to /One (service A), one to /Two
    (service B, another certificate), one to /One again, then a clear one
    to /Plain (A's too).  Each is routed afresh and answered with a new
    handshake; the third session takes the backend connection the first
    one left in the pool; nothing is logged as an abort."""
    a, b = service("A"), service("B")
    big = os.urandom(1 << 20)    # a payload that spans many TLS records
    with two_routes(a, b) as d:
        base = d.sockets()
        s = d.connect(timeout=30)
        first = tls_session(s, "net.tcp://localhost/One", [b"1", big], b"A")
        second = tls_session(s, "net.tcp://localhost/Two", [b"2"], b"B")
        third = tls_session(s, "net.tcp://localhost/One", [b"3"], b"A")
        assert first == third and first != second, "the routes' certificates"
        r = Reader(s)
        s.sendall(preamble("net.tcp://localhost/Plain"))
        assert r.record()[0] == 0x0B
        s.sendall(sized_envelope(b"4") + b"\x07")
        assert r.record() == (0x06, b"A:4")
        assert r.record()[0] == 0x07
        s.close()
        # the client's socket closed; A's and B's connections stay pooled
        d.assert_no_leak(base + 2)
        log = d.log()
        assert log.count("the client left its TLS stream after End") == 3, log
        assert "aborted" not in log, log
        assert "route [one]: forwarding to %s on a pooled connection" % a.addr in log, log
        assert "route [plain]: forwarding to %s on a pooled connection" % a.addr in log, log
        assert a.accepted == 1 and b.accepted == 1, (a.accepted, b.accepted)
        assert vias(a) == ["net.tcp://localhost/One"] * 2 + ["net.tcp://localhost/Plain"]
        assert vias(b) == ["net.tcp://localhost/Two"]
    a.close()
    b.close()


def test_next_preamble_after_tls_is_routed_and_faulted_in_clear():
    """After a TLS session the next preamble, even pipelined behind the
    End inside TLS, is routed in clear: a Via without a route gets
    EndpointNotFound, a terminating route asked in clear UpgradeInvalid,
    both as clear Fault records, and neither reaches a service."""
    for second, want in (("net.tcp://localhost/Admin", "EndpointNotFound"),
                         ("net.tcp://localhost/One", "UpgradeInvalid")):
        a, b = service("A"), service("B")
        with two_routes(a, b) as d:
            s = d.connect()
            t = upgraded(s, "net.tcp://localhost/One")
            # Preamble End, an early envelope and End in one TLS write, and
            # the next clear preamble right behind them on the raw socket
            t.send(b"\x0c" + sized_envelope(b"early") + b"\x07")
            s.sendall(preamble(second))
            r = Reader(t)
            assert r.record()[0] == 0x0B
            assert r.record() == (0x06, b"A:early")
            assert r.record()[0] == 0x07
            data, how = recv_until_close(s)
            assert data == fault_record(want), (second, data)
            s.close()
            d.wait_log(f"sent {want}")
            assert vias(a) == ["net.tcp://localhost/One"] and vias(b) == []
        a.close()
        b.close()


def test_bytes_after_end_inside_tls_reset_before_a_service_sees_them():
    """Inside TLS nothing may follow the client's End (the next preamble
    comes in clear): bytes there, in the same write as the End or with the
    preamble, reset the connection, and the service never reads them; nor,
    after the service's End, a TLS record where a clear preamble belongs."""
    session_bytes = preamble("net.tcp://localhost/One") + sized_envelope(b"x") + b"\x07"
    cases = {
        "after End, same write": lambda t: (t.send(b"\x0c"), t.send(
            sized_envelope(b"x") + b"\x07" + preamble("net.tcp://h/Admin"))),
        "with the preamble": lambda t: t.send(
            b"\x0c" + sized_envelope(b"x") + b"\x07" + sized_envelope(b"more")),
    }
    for name, send in cases.items():
        a = recorder("A")
        with daemon_with(tls_route("one", "net.tcp://+/One", a.addr), "workers = 1") as d:
            s = d.connect()
            send(upgraded(s, "net.tcp://localhost/One"))
            try:
                recv_until_close(s)
            except OSError:
                pass
            s.close()
            d.wait_log("bytes after its End inside TLS")
            if a.accepted:
                wait_for(lambda: a.got, what="the service's end of stream")
            for got in a.got:
                assert session_bytes.startswith(got), (name, got)
        a.close()
    # after the service's End, a TLS record where a clear preamble belongs
    a = service("A")
    with daemon_with(tls_route("one", "net.tcp://+/One", a.addr), "workers = 1") as d:
        s = d.connect()
        t = upgraded(s, "net.tcp://localhost/One")
        t.send(b"\x0c")
        r = Reader(t)
        assert r.record()[0] == 0x0B
        t.send(b"\x07")
        assert r.record()[0] == 0x07
        t.send(sized_envelope(b"smuggled"))
        data, how = recv_until_close(s)
        assert data == b"" and how in ("reset", "eof"), (data, how)
        s.close()
        d.wait_log("client sent bytes inside TLS after the session's End; reset")
        # the service's connection sits in the pool, and saw one session
        assert vias(a) == ["net.tcp://localhost/One"]
    a.close()


def test_close_notify_after_end_closes_cleanly():
    """A TLS client that ends the connection the TLS way after End both
    ways (close_notify, then FIN) gets nettcpd's close_notify and a FIN,
    not a reset, and the backend connection is pooled as after any
    session."""
    a = service("A")
    with daemon_with(tls_route("one", "net.tcp://+/One", a.addr), "workers = 1") as d:
        base = d.sockets()
        s = d.connect()
        tls_session(s, "net.tcp://localhost/One", [b"x"], b"A")
        t = TLS_CLIENTS[-1]
        t.close_notify()
        s.shutdown(socket.SHUT_WR)
        assert t.recv() == b"", "no close_notify from nettcpd"
        data, how = recv_until_close(s)
        assert (data, how) == (b"", "eof"), (data, how)
        s.close()
        d.wait_log("the client closed its TLS stream after End (close_notify), closed")
        d.assert_no_leak(base + 1)    # A's connection, pooled
        assert "reset" not in d.log()
    a.close()


def test_record_out_of_place_inside_tls_resets():
    """A record no session holds, inside TLS: reset on both sides, one log
    line naming it, and the service never sees it."""
    for bad, rtype in ((preamble("net.tcp://h/Admin"), 0x00), (b"\x0c", 0x0C),
                       (b"\x05\x03abc\x00", 0x05)):
        a = recorder("A")
        with daemon_with(tls_route("one", "net.tcp://+/One", a.addr), "workers = 1") as d:
            s = d.connect()
            t = upgraded(s, "net.tcp://localhost/One")
            t.send(b"\x0c")
            assert Reader(t).record()[0] == 0x0B
            t.send(sized_envelope(b"fine") + bad)
            try:
                recv_until_close(s)
            except OSError:
                pass
            s.close()
            d.wait_log("client sent record 0x%02x, which has no place" % rtype)
            wait_for(lambda: a.got, what="the service's end of stream")
            assert a.got == [preamble("net.tcp://localhost/One") + sized_envelope(b"fine")], \
                (bad, a.got)
        a.close()


def test_service_fault_inside_tls_reaches_the_client():
    """A service that answers the preamble with a Fault and closes: the
    Fault goes to the client inside TLS, then the end of the stream."""
    def handler(c, backend):
        Reader(c).preamble()
        c.sendall(fault_record("ServerTooBusy"))
    a = Backend(handler=handler, name="A")
    with daemon_with(tls_route("one", "net.tcp://+/One", a.addr)) as d:
        s = d.connect()
        t = upgraded(s, "net.tcp://localhost/One")
        t.send(b"\x0c")
        got = bytearray()
        while True:
            chunk = t.recv()
            if not chunk:
                break
            got += chunk
        assert bytes(got) == fault_record("ServerTooBusy"), got
        s.close()
        assert "aborted" not in d.log()
    a.close()


def resumed(d, via, session):
    """A new connection that offers session: (reused?, the session to offer
    next), after a whole session inside TLS."""
    s = d.connect()
    t = upgraded(s, via, session)
    t.send(b"\x0c")
    r = Reader(t)
    assert r.record()[0] == 0x0B     # the ticket comes with it (TLS 1.3)
    t.send(b"\x07")
    assert r.record()[0] == 0x07
    s.close()
    return t.obj.session_reused, t.obj.session


def test_session_tickets_resume_per_certificate():
    """A client that redials offers its ticket and resumes, without a full
    handshake, on the route whose certificate it was given; on a route with
    another certificate the ticket is refused and a full handshake follows;
    with tls_session_timeout = off no ticket is issued."""
    a, b = service("A"), service("B")
    with two_routes(a, b) as d:
        reused, first = resumed(d, "net.tcp://localhost/One", None)
        assert not reused and first is not None and first.has_ticket
        reused, again = resumed(d, "net.tcp://localhost/One", first)
        assert reused, "the ticket from /One was not resumed on /One"
        reused, _ = resumed(d, "net.tcp://localhost/Two", again)
        assert not reused, "a ticket for /One's certificate resumed on /Two"
        assert "aborted" not in d.log() and "failed" not in d.log()
    with two_routes(a, b, "tls_session_timeout = off") as d:
        reused, first = resumed(d, "net.tcp://localhost/One", None)
        assert not reused and not first.has_ticket
    a.close()
    b.close()


def test_expired_ticket_gets_a_full_handshake():
    """With tls_session_timeout = 1s a ticket older than that is refused
    (its key may be replaced by then) and the client gets a full handshake
    and a new ticket, which resumes."""
    a, b = service("A"), service("B")
    with two_routes(a, b, "tls_session_timeout = 1s") as d:
        _, old = resumed(d, "net.tcp://localhost/One", None)
        time.sleep(2.5)
        reused, fresh = resumed(d, "net.tcp://localhost/One", old)
        assert not reused, "a ticket older than tls_session_timeout resumed"
        reused, _ = resumed(d, "net.tcp://localhost/One", fresh)
        assert reused, "the new ticket did not resume"
    a.close()
    b.close()


if __name__ == "__main__":
    make_pki()
    run_tests(globals())
