"""Client access control: allow = CIDR, ... and deny = CIDR, ... in [global]
and per route, IPv4, IPv6 and IPv4-mapped.  Deny first, then allow (an
allow list refuses everyone it does not hold); a client must pass both
[global]'s rules and its route's.  A refused client gets the bytes a Via
without a route gets (EndpointNotFound), before any backend connection, on
the first session of a connection or a later one, in clear before a TLS
upgrade; the access log says "denied", and the metrics count it.  A reload
applies new rules to the next session, and closes a stream pinned to a
route whose new rules refuse its client."""

import json
import os
import signal
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, RUNNING, SLOW, WRAPPER, Backend, Daemon,  # noqa: E402
                          fault_record, free_port, preamble,
                          recv_exact, recv_until_close, run_tests, wait_for)
from test_sessions import Reader, service, session  # noqa: E402
import test_metrics  # noqa: E402
import test_tls  # noqa: E402

NOT_FOUND = fault_record("EndpointNotFound")


def config(listen, glob=(), routes=(), access_log=None):
    """routes are (name, via, backend, [more lines]); one worker, so a
    reload is taken by the worker that serves the next client."""
    out = ["[global]", f"listen = {listen}", "log_level = debug", "workers = 1",
           "backend_pool_settle = 0", *glob]
    if access_log:
        out.append(f"access_log = {access_log}")
    out.append("")
    for name, via, backend, more in routes:
        out += [f"[{name}]", f"via = {via}", f"backend = {backend}", *more, ""]
    return "\n".join(out)


def daemon(glob=(), routes=(), host="127.0.0.1", access=False):
    port = free_port(host)
    listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    d = Daemon(raw_config="")
    d.port, d.host = port, host
    d.access = os.path.join(d.dir, "access.jsonl") if access else None
    d.write = lambda g, r: write(d, config(listen, g, r, d.access))
    d.write(glob, routes)
    return d


def write(d, text):
    tmp = d.config + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, d.config)


def client(d, src, host=None):
    """A connection to d from the local address src."""
    host = host or d.host
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.settimeout(5 * SLOW)
    s.bind((src, 0))
    s.connect((host, d.port))
    return s


def denied(d, src, via, host=None):
    """The client at src gets exactly what a Via without a route gets."""
    s = client(d, src, host)
    s.sendall(preamble(via))
    data, how = recv_until_close(s)
    s.close()
    return data == NOT_FOUND and how == "eof"


def served(d, src, via, name, host=None):
    s = client(d, src, host)
    try:
        return session(s, via) == [name.encode() + b":hello"]
    finally:
        s.close()


def records(path):
    if not os.path.exists(path):
        return []
    return [json.loads(line) for line in open(path).read().splitlines()]


def test_ipv4_route_rules_deny_first_then_allow():
    a, b, o = service("A"), service("B"), service("O")
    d = daemon(routes=[
        ("a", "net.tcp://+/A", a.addr, ["allow = 127.0.0.1"]),
        ("b", "net.tcp://+/B", b.addr, ["allow = 127.0.0.0/8", "deny = 127.0.0.2"]),
        ("open", "net.tcp://+/Open", o.addr, [])])
    with d:
        assert served(d, "127.0.0.1", "net.tcp://h/A", "A")
        assert served(d, "127.0.0.1", "net.tcp://h/B", "B")
        # not in a's allow list: everything else is denied
        assert denied(d, "127.0.0.2", "net.tcp://h/A")
        assert denied(d, "127.0.0.3", "net.tcp://h/A")
        # deny first: in b's allow list, and still refused
        assert denied(d, "127.0.0.2", "net.tcp://h/B")
        assert served(d, "127.0.0.3", "net.tcp://h/B", "B")
        # no rules: every client
        assert served(d, "127.0.0.2", "net.tcp://h/Open", "O")
        # nothing of a refused client reached a backend
        assert (a.accepted, len(a.sessions)) == (1, 1), (a.accepted, a.sessions)
        assert len(b.sessions) == 2, b.sessions
        log = d.log()
        assert "client 127.0.0.2:" in log and "not in the route's allow" in log, log
        assert "refused by the route's deny" in log, log
    for x in (a, b, o):
        x.close()


def test_global_and_route_rules_both_apply():
    a, b = service("A"), service("B")
    d = daemon(glob=["deny = 127.0.0.4", "allow = 127.0.0.0/29"], routes=[
        ("a", "net.tcp://+/A", a.addr, []),
        ("b", "net.tcp://+/B", b.addr, ["deny = 127.0.0.3"])], access=True)
    with d:
        assert served(d, "127.0.0.1", "net.tcp://h/A", "A")
        assert served(d, "127.0.0.1", "net.tcp://h/B", "B")
        assert denied(d, "127.0.0.4", "net.tcp://h/A")      # [global] deny
        assert denied(d, "127.0.0.9", "net.tcp://h/A")      # not in [global] allow
        assert served(d, "127.0.0.3", "net.tcp://h/A", "A")
        assert denied(d, "127.0.0.3", "net.tcp://h/B")      # b's own deny
        # a Via no route takes: the same bytes for a refused client and
        # for an admitted one, so a refusal tells nothing of the routes
        assert denied(d, "127.0.0.4", "net.tcp://h/Nowhere")
        assert denied(d, "127.0.0.1", "net.tcp://h/Nowhere")
        wait_for(lambda: len(records(d.access)) == 8, what="8 access-log records")
        recs = records(d.access)
        got = [(r["client_ip"], r["route"], r["outcome"], r["fault"], r["backend"])
               for r in recs]
        # sorted: each is written as its connection closes
        assert sorted(got, key=str) == sorted([
            ("127.0.0.1", "a", "closed", None, a.addr),
            ("127.0.0.1", "b", "closed", None, b.addr),
            ("127.0.0.4", "a", "denied", "EndpointNotFound", None),
            ("127.0.0.9", "a", "denied", "EndpointNotFound", None),
            ("127.0.0.3", "a", "closed", None, a.addr),
            ("127.0.0.3", "b", "denied", "EndpointNotFound", None),
            ("127.0.0.4", None, "denied", "EndpointNotFound", None),
            ("127.0.0.1", None, "faulted", "EndpointNotFound", None)], key=str), got
        assert all(r["via"] == "net.tcp://h/A" for r in recs
                   if r["client_ip"] == "127.0.0.9"), recs
        log = d.log()
        assert "refused by [global] deny" in log and "not in [global] allow" in log, log
    assert len(a.sessions) == 2 and len(b.sessions) == 1
    a.close()
    b.close()


def test_ipv6_rules():
    a = Backend(name="A")
    d = daemon(routes=[
        ("a", "net.tcp://+/A", a.addr, ["allow = ::1"]),
        ("b", "net.tcp://+/B", a.addr, ["deny = ::1/128"]),
        ("c", "net.tcp://+/C", a.addr, ["allow = 2001:db8::/32, 127.0.0.1"]),
        ("d", "net.tcp://+/D", a.addr, ["deny = ::/0"])], host="::1")
    with d:
        s = client(d, "::1")
        s.sendall(preamble("net.tcp://h/A"))
        assert recv_exact(s, 2) == b"\x0bA"
        s.close()
        for via in ("net.tcp://h/B", "net.tcp://h/C", "net.tcp://h/D"):
            assert denied(d, "::1", via), via
        assert a.accepted == 1
        assert "client [::1]:" in d.log()
    a.close()


class DualStack(Daemon):
    """A daemon given a [::] socket that takes IPv4 too (IPV6_V6ONLY off,
    as a systemd socket unit with BindIPv6Only=both passes it): an IPv4
    client's address arrives as ::ffff:a.b.c.d."""

    def start(self):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", self.port))
        sock.listen(64)
        fd = sock.fileno()

        def hand_over():
            os.dup2(fd, 3)
            os.putenv("LISTEN_FDS", "1")
            os.putenv("LISTEN_PID", str(os.getpid()))

        with open(self.logpath, "wb") as log:
            self.proc = subprocess.Popen(WRAPPER + [NETTCPD, "-c", self.config],
                                         stdout=log, stderr=log, preexec_fn=hand_over,
                                         close_fds=False)
        sock.close()
        RUNNING.append(self)
        wait_for(lambda: "started" in self.log() or self.proc.poll() is not None,
                 10, what="nettcpd started")
        assert "started" in self.log(), self.log()
        return self


def test_ipv4_mapped_client_matches_ipv4_rules():
    a, b = service("A"), service("B")
    port = free_port("::")
    d = DualStack(raw_config="")
    d.port, d.host = port, "127.0.0.1"
    write(d, config(f"[::]:{port}", routes=[
        ("a", "net.tcp://+/A", a.addr, ["deny = 127.0.0.2"]),
        ("b", "net.tcp://+/B", b.addr, ["allow = 127.0.0.2/32"]),
        ("m", "net.tcp://+/M", b.addr, ["allow = ::ffff:127.0.0.0/126"])]))
    with d:
        assert "(socket handed over)" in d.log(), d.log()
        assert denied(d, "127.0.0.2", "net.tcp://h/A")
        assert served(d, "127.0.0.2", "net.tcp://h/B", "B")
        assert served(d, "127.0.0.1", "net.tcp://h/A", "A")
        assert denied(d, "127.0.0.1", "net.tcp://h/B")
        # an IPv6 rule in the mapped form holds IPv4 clients
        assert served(d, "127.0.0.3", "net.tcp://h/M", "B")
        assert denied(d, "127.0.0.4", "net.tcp://h/M")
        # the clients did arrive as IPv4-mapped IPv6 addresses
        assert "client [::ffff:127.0.0.2]:" in d.log(), d.log()
    a.close()
    b.close()


def test_a_later_session_is_checked_against_its_own_route():
    """127.0.0.2 may use /A but not /B: its second session on one
    connection, to /B, is refused, and /B's backend, with a pooled
    connection ready, receives nothing."""
    a, b = service("A"), service("B")
    d = daemon(routes=[("a", "net.tcp://+/A", a.addr, []),
                       ("b", "net.tcp://+/B", b.addr, ["deny = 127.0.0.2"])])
    with d:
        # an admitted client leaves a pooled connection to /B's backend
        assert served(d, "127.0.0.1", "net.tcp://h/B", "B")
        d.wait_log("backend connection pooled")
        s = client(d, "127.0.0.2")
        r = Reader(s)
        assert session(s, "net.tcp://h/A", reader=r) == [b"A:hello"]
        s.sendall(preamble("net.tcp://h/B"))
        data, how = recv_until_close(s)
        assert bytes(r.buf) + data == NOT_FOUND and how == "eof", (r.buf, data, how)
        s.close()
        # and the other way round: refused first, nothing else on it
        s = client(d, "127.0.0.2")
        s.sendall(preamble("net.tcp://h/B"))
        assert recv_until_close(s) == (NOT_FOUND, "eof")
        s.close()
        # the pooled connection is still there, untouched, for 127.0.0.1
        assert served(d, "127.0.0.1", "net.tcp://h/B", "B")
    assert b.accepted == 1, b.accepted
    assert len(b.sessions) == 2, b.sessions
    assert len(a.sessions) == 1
    a.close()
    b.close()


def test_tls_route_refuses_before_the_upgrade():
    test_tls.make_pki()
    b = Backend(name="S")
    tls = test_tls.tls_route("secure", "net.tcp://+/Secure", b.addr,
                             extra=("deny = 127.0.0.2",)).splitlines()
    d = daemon(routes=[(tls[0][1:-1], "net.tcp://+/Secure", b.addr, tls[3:])])
    with d:
        s = client(d, "127.0.0.2")
        s.sendall(preamble("net.tcp://h/Secure", upgrade="application/ssl-tls"))
        # no Upgrade Response, no handshake: the fault, in clear
        assert recv_until_close(s) == (NOT_FOUND, "eof")
        s.close()
        # an admitted client is upgraded and reaches the service
        t = test_tls.upgrade(d, "net.tcp://h/Secure")
        got = t.recv(2)
        got += t.recv(2 - len(got)) if len(got) < 2 else b""
        assert got == b"\x0bS", got
        t.close()
    assert b.accepted == 1
    b.close()


def test_later_tls_session_refused_on_its_own_route():
    """127.0.0.2 runs a TLS session on /One, then, on the same connection,
    asks for /Two, whose rules refuse it: the fault comes in clear, before
    any Upgrade Response, and /Two's service receives nothing."""
    import test_tls_sessions
    a, b = service("A"), service("B")
    test_tls.make_pki()
    d = test_tls.daemon_with(
        test_tls.tls_route("one", "net.tcp://+/One", a.addr) +
        test_tls.tls_route("two", "net.tcp://+/Two", b.addr, extra=("deny = 127.0.0.2",)),
        "workers = 1\nbackend_pool_settle = 0\n")
    with d:
        s = client(d, "127.0.0.2", host="127.0.0.1")
        test_tls_sessions.tls_session(s, "net.tcp://localhost/One", [b"1"], b"A")
        s.sendall(preamble("net.tcp://localhost/Two", upgrade="application/ssl-tls"))
        assert recv_until_close(s) == (NOT_FOUND, "eof")
        s.close()
        d.wait_log("route [two]: refused by the route's deny, sent EndpointNotFound")
    assert len(a.sessions) == 1 and b.accepted == 0, (a.sessions, b.accepted)
    a.close()
    b.close()


def test_reload_applies_new_rules():
    a, s = service("A"), Backend(name="S")
    plain = [("a", "net.tcp://+/A", a.addr, []), ("s", "net.tcp://+/S", s.addr, [])]
    d = daemon(routes=plain)
    with d:
        idle = client(d, "127.0.0.1")
        r = Reader(idle)
        assert session(idle, "net.tcp://h/A", reader=r) == [b"A:hello"]
        pins = {}
        for src in ("127.0.0.1", "127.0.0.2"):
            p = client(d, src)
            p.sendall(preamble("net.tcp://h/S", upgrade="application/negotiate"))
            assert recv_exact(p, 2) == b"\x0bS"
            pins[src] = p
        # a preamble read up to its Via, routed and admitted, not yet ended
        half = client(d, "127.0.0.1")
        half.sendall(preamble("net.tcp://h/A", end=False))
        d.write((), [("a", "net.tcp://+/A", a.addr, ["deny = 127.0.0.1"]),
                     ("s", "net.tcp://+/S", s.addr, ["deny = 127.0.0.1"])])
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("worker 0 took generation 2")
        # the half-read preamble is decided again, under the new rules
        assert recv_until_close(half) == (NOT_FOUND, "eof")
        # the idle connection's next session is routed under the new rules
        idle.sendall(preamble("net.tcp://h/A"))
        assert recv_until_close(idle) == (NOT_FOUND, "eof")
        # the stream pinned for 127.0.0.1 is closed, the other one goes on
        pins["127.0.0.1"].settimeout(3 * SLOW)
        data, how = recv_until_close(pins["127.0.0.1"])
        assert data == b"" and how in ("eof", "reset"), (data, how)
        pins["127.0.0.2"].sendall(b"ping")
        assert recv_exact(pins["127.0.0.2"], 4) == b"ping"
        assert denied(d, "127.0.0.1", "net.tcp://h/A")
        assert served(d, "127.0.0.2", "net.tcp://h/A", "A")
        # a broken list changes nothing and says where
        write(d, open(d.config).read().replace("deny = 127.0.0.1", "deny = 127.0.0.1/8", 1))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(f"{d.config}:10: bad deny: '127.0.0.1/8': address bits set past the /8 prefix")
        assert denied(d, "127.0.0.1", "net.tcp://h/A")
        # rules removed: admitted again
        d.write((), plain)
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("worker 0 took generation 3")
        assert served(d, "127.0.0.1", "net.tcp://h/A", "A")
        for x in (idle, half, *pins.values()):
            x.close()
    a.close()
    s.close()


def test_denials_are_counted():
    if test_metrics.text_string_to_metric_families is None:
        print("SKIP: test_denials_are_counted: no Prometheus text parser")
        return
    a = service("A")
    d = daemon(glob=["deny = 127.0.0.5"],
               routes=[("a", "net.tcp://+/A", a.addr, ["deny = 127.0.0.2"])])
    d.mport = free_port()
    write(d, open(d.config).read().replace("[global]\n", f"[global]\nmetrics = "
                                           f"127.0.0.1:{d.mport}\n", 1))
    with d:
        before, types = test_metrics.scrape(d.mport)
        assert served(d, "127.0.0.1", "net.tcp://h/A", "A")
        for src in ("127.0.0.2", "127.0.0.2", "127.0.0.5"):
            assert denied(d, src, "net.tcp://h/A")
        assert denied(d, "127.0.0.5", "net.tcp://h/Nowhere")

        def counted():
            after, _ = test_metrics.scrape(d.mport)
            return test_metrics.delta(before, after, "nettcpd_connections_finished_total",
                                      outcome="denied") == 4
        wait_for(counted, what="4 denied connections counted")
        after, types = test_metrics.scrape(d.mport)
        dl = lambda name, **kw: test_metrics.delta(before, after, name, **kw)  # noqa: E731
        assert types["nettcpd_route_denied"] == "counter"
        # the route's own: its two refusals and the [global] one on it
        assert dl("nettcpd_route_denied_total", route="a") == 3
        assert dl("nettcpd_route_sessions_total", route="a") == 1
        assert dl("nettcpd_connections_finished_total", outcome="faulted") == 0
        assert dl("nettcpd_faults_total", fault="EndpointNotFound") == 4
    a.close()


def check(text):
    d = Daemon(raw_config=text)
    r = subprocess.run(WRAPPER + [NETTCPD, "-t", "-c", d.config], capture_output=True,
                       text=True, timeout=30 * SLOW)
    return d.config, r


def test_config_check_names_file_and_line():
    head = "[global]\nlisten = 127.0.0.1:1\n"
    path, r = check(head + "allow = 10.0.0.0/8\nallow = ::1, 192.168.0.0/16\n"
                    "deny = 10.9.0.0/16\n\n[a]\nvia = net.tcp://+/A\n"
                    "backend = 127.0.0.1:2\nallow = 10.0.0.0/8\nallow = 10.1.0.0/16\n"
                    "deny = ::/0\n")
    assert r.returncode == 0, r.stderr
    path, r = check(head + "allow = 10.0.0.1/8\ndeny = \ndeny = 10.0.0.0/8,,\n\n"
                    "[a]\nvia = net.tcp://+/A\nbackend = 127.0.0.1:2\n"
                    "allow = 2001:db8::/129\ndeny = example.com\ndeny = [::1]\n")
    assert r.returncode == 1, r.stderr
    for line, text in ((3, "bad allow: '10.0.0.1/8': address bits set past the /8 prefix"),
                       (4, "bad deny: empty entry in the list"),
                       (5, "bad deny: empty entry in the list"),
                       (10, "bad allow: '2001:db8::/129': the prefix length must be 0 to 128"),
                       (11, "bad deny: 'example.com': not an IPv4 address"),
                       (12, "bad deny: '[::1]': not an IPv6 address")):
        assert f"{path}:{line}: {text}" in r.stderr, (line, r.stderr)


if __name__ == "__main__":
    run_tests(globals())
