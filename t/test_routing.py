"""Routing by Via and byte-exact replay, through the real daemon."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (Backend, Daemon, FORWARD_METHODS, connect, free_port,  # noqa: E402
                          preamble, recv_exact, run_tests, sized_envelope, string_record,
                          wait_for)


def call(daemon_port, via, host="127.0.0.1", **kw):
    """Send a preamble; return the backend name that acknowledged it."""
    s = connect(daemon_port, host=host)
    try:
        s.sendall(preamble(via, **kw))
        first = s.recv(1)
        if first != b"\x0b":
            return ("fault" if first == b"\x08" else "closed:" + first.hex())
        name = s.recv(64).decode()
        return name
    finally:
        s.close()


def test_routes_by_via_longest_segment_prefix():
    a, b, c = Backend(name="A"), Backend(name="B"), Backend(name="C")
    routes = [("a", ["net.tcp://+/Calculator", "net.tcp://+/Calc2"], a.addr),
              ("b", "net.tcp://+/Calculator/Admin", b.addr),
              ("c", "net.tcp://*/", c.addr)]
    with Daemon(routes) as d:
        p = d.port
        assert call(p, "net.tcp://host/Calculator") == "A"
        assert call(p, "net.tcp://HOST:808/calculator/") == "A"
        assert call(p, "net.tcp://h/Calc2/Sub") == "A"
        assert call(p, "net.tcp://h/Calculator/Admin") == "B"
        assert call(p, "net.tcp://h//CALCULATOR//admin/x?q=1#f") == "B"
        assert call(p, "net.tcp://h/Calculator/Admin2") == "A"
        assert call(p, "net.tcp://h/Calculator10") == "C"   # whole segments only
        assert call(p, "net.tcp://h/%43alculator") == "A"   # %43 = C, unreserved
        assert call(p, "net.tcp://h/Calculator/x/../Admin") == "B"
        # singleton mode (streamed transfer) is routed the same way
        assert call(p, "net.tcp://h/Calculator/Admin", mode=1, encoding=7) == "B"
    for x in (a, b, c):
        x.close()


def test_host_classes_strong_exact_weak():
    strong, exact, weak = Backend(name="S"), Backend(name="E"), Backend(name="W")
    routes = [("strong", "net.tcp://+/App", strong.addr),
              ("exact", ["net.tcp://Public.Example.COM/App/Deep",
                         "net.tcp://public.example.com/Other"], exact.addr),
              ("weak", "net.tcp://*/", weak.addr)]
    with Daemon(routes) as d:
        p = d.port
        # a shallow strong-wildcard match beats a deeper exact-host one
        assert call(p, "net.tcp://public.example.com/App/Deep") == "S"
        assert call(p, "net.tcp://PUBLIC.example.com:808/other/x") == "E"
        assert call(p, "net.tcp://elsewhere.example.com/other") == "W"
        assert call(p, "net.tcp://[::1]:9/Nothing") == "W"
    for x in (strong, exact, weak):
        x.close()


def test_route_port_compares_local_port_not_via_port():
    a, b = Backend(name="A"), Backend(name="B")
    p1, p2 = free_port(), free_port()
    routes = [("on-p1", f"net.tcp://+:{p1}/Svc", a.addr),
              ("any-port", "net.tcp://+/Svc", b.addr)]
    with Daemon(routes, listen=f"127.0.0.1:{p1}, 127.0.0.1:{p2}") as d:
        d.port = p1
        # the Via says p2, but the connection arrived on p1
        assert call(p1, f"net.tcp://127.0.0.1:{p2}/Svc") == "A"
        assert call(p2, f"net.tcp://127.0.0.1:{p1}/Svc") == "B"
    a.close()
    b.close()


def test_ipv6_listener():
    a = Backend(name="A", host="::1")
    port = free_port("::1")
    with Daemon([("a", "net.tcp://+/Svc", a.addr)], listen=f"[::1]:{port}") as d:
        d.port = port
        assert call(port, "net.tcp://[::1]/Svc", host="::1") == "A"
    a.close()


def test_byte_exact_replay_any_split():
    """The backend receives exactly the client's bytes, however they were
    split: whole, one byte per write, and split right after the Via."""
    for forward in FORWARD_METHODS:
        a = Backend(name="A")
        with Daemon([("a", "net.tcp://+/Echo", a.addr)], forward=forward) as d:
            pre = preamble("net.tcp://example.test:808/Echo/Deep", encoding=8)
            via_end = pre.index(b"Deep") + 4
            splits = [[pre], [bytes([x]) for x in pre], [pre[:via_end], pre[via_end:]],
                      [pre[:7], pre[7:]]]
            for parts in splits:
                s = d.connect()
                for part in parts:
                    s.sendall(part)
                    if len(parts) > 2:
                        time.sleep(0.001)
                assert recv_exact(s, 2) == b"\x0bA"
                body = sized_envelope(os.urandom(3000)) + b"\x07"
                s.sendall(body)
                assert recv_exact(s, len(body)) == body
                s.close()
            time.sleep(0.1)
            assert a.received == [pre] * len(splits), (forward, a.received)
        a.close()


def test_upgrade_request_passes_through():
    """An ssl-tls upgrade request goes to the backend untouched, and the
    backend's Upgrade Response and whatever follows reach the client."""
    def tls_backend(c, backend):
        got = bytearray()
        while not got.endswith(b"application/ssl-tls"):
            chunk = c.recv(4096)
            if not chunk:
                return
            got += chunk
        with backend.lock:
            backend.received.append(bytes(got))
        c.sendall(b"\x0a")
        hello = c.recv(4096)
        c.sendall(b"SERVERHELLO:" + hello)

    a = Backend(tls_backend, name="A")
    with Daemon([("a", "net.tcp://+/Secure", a.addr)]) as d:
        s = d.connect()
        pre = preamble("net.tcp://h/Secure", upgrade="application/ssl-tls")
        s.sendall(pre)
        assert recv_exact(s, 1) == b"\x0a"
        hello = b"\x16\x03\x01fake-client-hello"
        s.sendall(hello)
        assert recv_exact(s, 12 + len(hello)) == b"SERVERHELLO:" + hello
        s.close()
        assert a.received == [pre]
    a.close()


def test_service_out_of_the_protocol_never_sees_the_next_preamble():
    """A service whose bytes after the Ack are not framing records has them
    passed to the client unread; the client's side stays followed, so its
    next preamble, after its End, reaches neither that service nor any
    other while the first one holds the connection.  (Re-routing of
    followed sessions is in test_sessions.py.)"""
    a, b = Backend(name="A"), Backend(name="B")
    with Daemon([("a", "net.tcp://+/A", a.addr), ("b", "net.tcp://+/B", b.addr)]) as d:
        s = d.connect()
        s.sendall(preamble("net.tcp://h/A"))
        assert recv_exact(s, 2) == b"\x0bA"
        s.sendall(b"\x07" + preamble("net.tcp://h/B"))
        # A echoes what it gets: the End only
        assert recv_exact(s, 1) == b"\x07"
        s.settimeout(0.5)
        try:
            extra = s.recv(1)
        except socket.timeout:
            extra = None
        assert extra is None, extra
        assert b.accepted == 0
        s.close()
    a.close()
    b.close()


def test_ten_thousand_routes():
    backends = [Backend(name=f"B{i}") for i in range(4)]
    lines = ["[global]", f"listen = 127.0.0.1:{free_port()}", "log_level = info", ""]
    for i in range(10000):
        lines += [f"[r{i}]", f"via = net.tcp://+/Service{i}", f"via = net.tcp://+/Service{i}/Sub",
                  f"backend = {backends[i % 4].addr}", ""]
    d = Daemon(raw_config="\n".join(lines))
    d.port = int(lines[1].rsplit(":", 1)[1])
    with d:
        for i in (0, 1, 4321, 9999, 7):
            assert call(d.port, f"net.tcp://h/Service{i}/Sub/x") == f"B{i % 4}"
        assert call(d.port, "net.tcp://h/Service10000") == "fault"
    for x in backends:
        x.close()


def test_extensible_encoding_and_long_via():
    a = Backend(name="A")
    with Daemon([("a", "net.tcp://+/Long", a.addr)]) as d:
        via = "net.tcp://h/Long/" + "x" * (2048 - len("net.tcp://h/Long/"))
        assert len(via) == 2048
        pre = preamble(via, encoding=None)[:-1] + string_record(4, "application/soap+msbinsession1+gzip") + b"\x0c"
        # whole, and cut around the preamble buffer's first size (256)
        for cuts in ((), (255, 256, 257), (100, 300, 2000)):
            s = d.connect()
            last = 0
            for cut in cuts + (len(pre),):
                s.sendall(pre[last:cut])
                last = cut
                time.sleep(0.01)
            assert recv_exact(s, 2) == b"\x0bA"
            s.close()
        wait_for(lambda: len(a.received) == 3, what="three preambles")
        assert a.received == [pre] * 3
    a.close()


if __name__ == "__main__":
    run_tests(globals())
