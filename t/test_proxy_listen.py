"""listen_proxy: listeners behind an L4 balancer, where every connection
begins with a PROXY v1 or v2 header from a trusted peer (proxy_trusted).
Good headers (TCP4, TCP6, LOCAL, UNKNOWN) reach the route with the real
client in the access log and the log lines; the header and the preamble in
one write, or split at every byte; a bad signature, a truncated, slow,
missing or oversized header, an untrusted peer: closed, no backend ever
dialled; a header on a plain listener is a malformed preamble.  The
configuration keys: -t with FILE:LINE, and a reload."""

import json
import os
from collections import Counter
import signal
import socket
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, Daemon, free_port,  # noqa: E402
                          preamble, recv_until_close, run_tests, sized_envelope, wait_for)
from test_metrics import scrape, text_string_to_metric_families, v as sample  # noqa: E402
from test_reload_policy import every_worker_took_the_last  # noqa: E402
from test_sessions import Reader, service, session  # noqa: E402
from test_systemd import ACTIVATE, Activated, config_file  # noqa: E402
from test_upgrade import alive, new_pid  # noqa: E402

V2_SIG = b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"
VIA = "net.tcp://h/A/x"


def v1(src, dst, sport, dport, fam=None):
    fam = fam or ("TCP6" if ":" in src else "TCP4")
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src, dst, sport, dport, tlvs=b"", command=1):
    if ":" in src:
        fam, addrs = 0x21, (socket.inet_pton(socket.AF_INET6, src) +
                            socket.inet_pton(socket.AF_INET6, dst))
    else:
        fam, addrs = 0x11, socket.inet_aton(src) + socket.inet_aton(dst)
    body = addrs + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIG + bytes([0x20 | command, fam]) + struct.pack("!H", len(body)) + body


V2_LOCAL = V2_SIG + b"\x20\x00\x00\x00"


class ProxyDaemon(Daemon):
    """A daemon with a plain listener (d.port) and a listen_proxy one
    (d.proxy_port), route A, and its access log in d.access."""

    def __init__(self, backend, extra="", **kw):
        self.proxy_port = free_port()
        super().__init__([("a", "net.tcp://+/A", backend.addr)],
                         extra_global=f"listen_proxy = 127.0.0.1:{self.proxy_port}\n"
                         + extra, **kw)
        self.access = os.path.join(self.dir, "access.jsonl")
        with open(self.config) as f:
            text = f.read()
        with open(self.config, "w") as f:
            f.write(text.replace("[global]\n", f"[global]\naccess_log = {self.access}\n", 1))

    def proxied(self, source=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(5 * SLOW)
        if source:
            s.bind((source, 0))
        s.connect(("127.0.0.1", self.proxy_port))
        return s

    def records(self, n):
        """The first n records (each worker writes its own: in no
        particular order between them)."""
        def ready():
            return os.path.exists(self.access) and \
                open(self.access).read().count("\n") >= n
        wait_for(ready, 5, what=f"{n} access-log records")
        return [json.loads(line) for line in open(self.access).read().splitlines()]


def closed_unserved(s, a, before):
    """The connection ends without a byte (RST or FIN), and the backend
    accepted nothing more."""
    data, _ = recv_until_close(s)
    s.close()
    assert data == b"", data
    assert a.accepted == before, (a.accepted, before)


def test_good_headers_reach_the_route_with_the_real_client():
    a = service("A")
    cases = [
        (v1("203.0.113.7", "198.51.100.1", 40001, 808), "203.0.113.7", 40001),
        (v1("2001:db8::7", "2001:db8::1", 40002, 808), "2001:db8::7", 40002),
        (v2("203.0.113.8", "198.51.100.1", 40003, 808), "203.0.113.8", 40003),
        (v2("2001:db8::8", "2001:db8::1", 40004, 808), "2001:db8::8", 40004),
        (v2("203.0.113.9", "198.51.100.1", 40005, 808,
            tlvs=b"\x04\x00\x03abc\xEA\x00\x05vpc-1"), "203.0.113.9", 40005),
    ]
    with ProxyDaemon(a) as d:
        for header, ip, port in cases:
            s = d.proxied()
            s.sendall(header)
            assert session(s, VIA, [b"x"]) == [b"A:x"], header
            s.close()
        # LOCAL (v2) and UNKNOWN (v1): the balancer's own connection, such
        # as its health check: the socket's own address stands.
        for header in (V2_LOCAL, b"PROXY UNKNOWN\r\n",
                       b"PROXY UNKNOWN ::1 ::2 1 2\r\n"):
            s = d.proxied()
            s.sendall(header)
            assert session(s, VIA, [b"y"]) == [b"A:y"], header
            local_port = s.getsockname()[1]
            s.close()
        recs = d.records(len(cases) + 3)
        assert all(r["outcome"] == "closed" and r["route"] == "a" and
                   r["listen_port"] == d.proxy_port for r in recs), recs
        clients = Counter((r["client_ip"], r["client_port"]) for r in recs)
        for header, ip, port in cases:
            assert clients[(ip, port)] == 1, (header, recs)
        assert clients[("127.0.0.1", local_port)] == 1, recs
        assert sum(n for (ip, _), n in clients.items() if ip == "127.0.0.1") == 3, recs
        # The log names the real client, and the balancer it came through.
        assert "client 203.0.113.7:40001 (proxy 127.0.0.1:" in d.log(), d.log()
        # The service received exactly the preamble, not one header byte.
        assert [pre for _, pre in a.sessions] == [preamble(VIA)] * (len(cases) + 3)


def test_header_and_preamble_in_one_write_and_split_at_every_byte():
    a = service("A")
    header = v2("203.0.113.10", "198.51.100.1", 41000, 808)
    first = v1("203.0.113.11", "198.51.100.1", 41001, 808)
    with ProxyDaemon(a) as d:
        for h in (header, first):
            s = d.proxied()
            s.sendall(h + preamble(VIA))
            r = Reader(s)
            assert r.record()[0] == 0x0B
            s.sendall(sized_envelope(b"1") + b"\x07")
            assert r.record() == (0x06, b"A:1")
            assert r.record()[0] == 0x07
            s.close()
        stream = header + preamble(VIA)
        for cut in range(1, len(stream)):
            s = d.proxied()
            s.sendall(stream[:cut])
            time.sleep(0.005)   # a second segment, read apart
            s.sendall(stream[cut:])
            r = Reader(s)
            assert r.record()[0] == 0x0B, cut
            s.sendall(b"\x07")
            assert r.record()[0] == 0x07, cut
            s.close()
        recs = d.records(2 + len(stream) - 1)
        assert Counter(r["client_ip"] for r in recs) == {
            "203.0.113.10": len(stream), "203.0.113.11": 1}, recs
        assert all(r["outcome"] == "closed" for r in recs), recs
        assert all(pre == preamble(VIA) for _, pre in a.sessions)


def test_bad_missing_truncated_and_oversized_headers_reach_no_backend():
    a = service("A")
    bad = [
        ("bad v2 signature", V2_SIG[:11] + b"\x0B" + b"\x21\x11\x00\x0C" + bytes(12)),
        ("v2 version 1", V2_SIG + b"\x11\x11\x00\x0C" + bytes(12)),
        ("v2 unix", V2_SIG + b"\x21\x31\x00\xD8" + bytes(216)),
        ("v2 udp", V2_SIG + b"\x21\x12\x00\x0C" + bytes(12)),
        ("v2 over the limit", V2_SIG + b"\x21\x11\x04\x01"),
        ("v2 length 65535", V2_SIG + b"\x20\x00\xFF\xFF"),
        ("v1 lower case", b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
        ("v1 bad port", b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),
        ("v1 no CRLF in 107", b"PROXY UNKNOWN " + b"x" * 200),
        ("missing: a preamble", preamble(VIA)),
        ("missing: http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ]
    with ProxyDaemon(a) as d:
        base = d.sockets()
        for name, data in bad:
            s = d.proxied()
            s.sendall(data)
            t0 = time.time()
            closed_unserved(s, a, 0)
            assert time.time() - t0 < 2 * SLOW, name   # at once, no timeout
        # Truncated: half a header, then the client's FIN.
        for h in (v2("203.0.113.1", "198.51.100.1", 1, 2), v1("1.2.3.4", "5.6.7.8", 1, 2)):
            s = d.proxied()
            s.sendall(h[:len(h) // 2])
            s.shutdown(socket.SHUT_WR)
            closed_unserved(s, a, 0)
        recs = d.records(len(bad) + 2)
        assert Counter(r["outcome"] for r in recs) == {"malformed": len(bad), "closed": 2}, recs
        assert all(r["client_ip"] == "127.0.0.1" and r["route"] is None for r in recs)
        assert "PROXY header: no PROXY header" in d.log(), d.log()
        assert "PROXY header: v2 length over the limit" in d.log()
        d.assert_no_leak(base)
    assert a.accepted == 0


def test_slow_header_meets_the_whole_header_deadline():
    """One byte every 0.3 s: proxy_timeout (1 s) counts from accept for the
    whole header, not from each byte."""
    a = service("A")
    header = v1("203.0.113.5", "198.51.100.1", 40000, 808)
    with ProxyDaemon(a, extra="proxy_timeout = 1s\npreamble_timeout = 30s") as d:
        s = d.proxied()
        t0 = time.time()
        sent = 0
        try:
            for b in header:
                s.sendall(bytes([b]))
                sent += 1
                time.sleep(0.3)
        except OSError:
            pass
        data, _ = recv_until_close(s)
        elapsed = time.time() - t0
        s.close()
        assert data == b""
        assert sent < len(header), sent
        assert 0.9 < elapsed < 1.0 + 3 * SLOW, elapsed
        assert d.records(1)[0]["outcome"] == "timeout"
        assert "proxy_timeout expired" in d.log(), d.log()
    assert a.accepted == 0


def test_untrusted_peer_is_reset_before_a_byte_is_read():
    a = service("A")
    with ProxyDaemon(a, extra="proxy_trusted = 127.0.0.2/32, ::1") as d:
        # 127.0.0.1 is not trusted: reset, even with a good header.
        s = d.proxied()
        try:
            s.sendall(v2("203.0.113.1", "198.51.100.1", 1, 808) + preamble(VIA))
        except OSError:
            pass
        data, how = recv_until_close(s)
        s.close()
        assert data == b"" and how == "reset", (data, how)
        d.wait_log("not in proxy_trusted")
        # 127.0.0.2 is: served, as the client the header names.
        s = d.proxied(source="127.0.0.2")
        s.sendall(v2("203.0.113.2", "198.51.100.1", 2, 808))
        assert session(s, VIA, [b"t"]) == [b"A:t"]
        s.close()
        recs = d.records(2)
        assert Counter((r["outcome"], r["client_ip"]) for r in recs) == {
            ("malformed", "127.0.0.1"): 1, ("closed", "203.0.113.2"): 1}, recs
    assert a.accepted == 1


def test_max_pending_counts_the_client_the_header_names():
    """All proxied connections come from the balancer's address; at
    max_pending the oldest preamble of the client holding the most gives
    way, not the oldest behind the balancer: a flood from one client cannot
    reset another client's preamble."""
    a = service("A")
    with ProxyDaemon(a, extra="max_pending = 4\nworkers = 1") as d:
        def held(client):
            s = d.proxied()
            s.sendall(v2(client, "198.51.100.1", 7, 808) + b"\x00")
            return s
        n = 0
        patient = held("198.51.100.9")
        n += 1
        wait_for(lambda: d.log().count("PROXY v2 header") == n, what="the header read")
        flood = []
        for _ in range(4):
            flood.append(held("203.0.113.66"))
            n += 1
            wait_for(lambda: d.log().count("PROXY v2 header") >= n - 1, what="the header read")
        d.wait_log("max_pending (4) reached")
        # The flood's oldest gave way; the patient client is served.
        assert recv_until_close(flood[0]) == (b"", "reset")
        patient.sendall(preamble(VIA)[1:])
        r = Reader(patient)
        assert r.record()[0] == 0x0B
        patient.sendall(b"\x07")
        assert r.record()[0] == 0x07
        for s in [patient] + flood:
            s.close()
        recs = d.records(2 + 3)   # and the rest of the flood, closed
        assert Counter((r["client_ip"], r["outcome"], r["route"]) for r in recs) == {
            ("203.0.113.66", "evicted", None): 1, ("203.0.113.66", "closed", None): 3,
            ("198.51.100.9", "closed", "a"): 1}, recs


def test_metrics_count_bad_headers_and_untrusted_peers():
    if text_string_to_metric_families is None:
        print("SKIP: metrics: no Prometheus text parser")
        return
    a = service("A")
    mport = free_port()
    with ProxyDaemon(a, extra=f"metrics = 127.0.0.1:{mport}\nproxy_trusted = 127.0.0.2\n"
                     "proxy_timeout = 500ms") as d:
        for data in (b"PROXY TCP4 1.2.3.4\r\n", preamble(VIA), b"PROXY UNK"):
            s = d.proxied(source="127.0.0.2")
            s.sendall(data)
            recv_until_close(s)     # the last one: proxy_timeout
            s.close()
        for _ in range(2):
            s = d.proxied()
            recv_until_close(s)
            s.close()
        s = d.proxied(source="127.0.0.2")
        s.sendall(v1("203.0.113.30", "198.51.100.1", 30, 808))
        assert session(s, VIA) == [b"A:hello"]
        s.close()
        d.records(6)
        samples, _ = scrape(mport)
        kind = "nettcpd_preamble_errors_total"
        assert sample(samples, kind, kind="proxy_header") == 3, samples
        assert sample(samples, kind, kind="proxy_untrusted") == 2, samples
        assert sample(samples, kind, kind="timeout") == 0, samples
        assert sample(samples, "nettcpd_route_sessions_total", route="a") == 1, samples


def test_header_on_a_plain_listener_is_a_malformed_preamble():
    a = service("A")
    with ProxyDaemon(a) as d:
        for h in (v1("203.0.113.1", "198.51.100.1", 1, 808),
                  v2("203.0.113.1", "198.51.100.1", 1, 808)):
            s = d.connect()
            s.sendall(h + preamble(VIA))
            recv_until_close(s)
            s.close()
        recs = d.records(2)
        assert [r["outcome"] for r in recs] == ["malformed"] * 2, recs
        assert all(r["client_ip"] == "127.0.0.1" for r in recs)
        # The plain listener still serves a plain client.
        s = d.connect()
        assert session(s, VIA) == [b"A:hello"]
        s.close()
    assert a.accepted == 1


def test_binary_upgrade_keeps_the_listener_a_proxy_one():
    """The socket a new binary is handed carries no flag: the address it
    matches in the file says it is a listen_proxy one."""
    a = service("A")
    d = ProxyDaemon(a).start()
    pid = None
    try:
        d.proc.send_signal(signal.SIGUSR2)
        pid = new_pid(d)
        d.wait_log(f"nettcpd[{pid}]: info: listening on 127.0.0.1:{d.proxy_port} "
                   "(PROXY protocol) (socket handed over)")
        d.wait_log(f"nettcpd[{pid}]: info: nettcpd")   # its "started" line
        assert d.stop() == 0
        # Only the new process is left to serve.
        s = d.proxied()
        s.sendall(v2("203.0.113.20", "198.51.100.1", 20, 808))
        assert session(s, VIA) == [b"A:hello"]
        s.close()
        s = d.proxied()
        s.sendall(preamble(VIA))
        assert recv_until_close(s) == (b"", "reset")
        s.close()
        wait_for(lambda: any(r["client_ip"] == "203.0.113.20" for r in d.records(2)),
                 what="the new process's record")
    finally:
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not alive(pid), what="the new process to exit")
        d.stop()


def test_socket_activation_keeps_the_listener_a_proxy_one():
    if ACTIVATE is None:
        print("SKIP: socket activation: no systemd-socket-activate")
        return
    a = service("A")
    port = free_port()
    _, path = config_file(f"[global]\nlisten_proxy = 127.0.0.1:{port}\nlog_level = debug\n"
                          f"[a]\nvia = net.tcp://+/A\nbackend = {a.addr}\n")
    act = Activated([f"127.0.0.1:{port}"], path)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
        s.sendall(v1("203.0.113.21", "198.51.100.1", 21, 808))
        assert session(s, VIA) == [b"A:hello"]
        s.close()
        assert f"listening on 127.0.0.1:{port} (PROXY protocol) (socket handed over)" \
            in act.text(), act.text()
        assert "client 203.0.113.21:21 (proxy 127.0.0.1:" in act.text(), act.text()
    finally:
        status = act.stop()
    assert status == 0, (status, act.text())


def check_config(text):
    d = Daemon(raw_config=text)
    r = subprocess.run([NETTCPD, "-t", "-c", d.config], capture_output=True, text=True)
    return r.returncode, r.stderr, d.config


def test_config_errors_name_file_and_line():
    p = free_port()
    cases = [
        (f"[global]\nlisten = 127.0.0.1:{p}\nlisten_proxy = 127.0.0.1:{p}\n",
         3, "duplicate listen address"),
        ("[global]\nlisten_proxy = nowhere\n", 2, "bad listen_proxy address"),
        ("[global]\nlisten_proxy = 127.0.0.1:1,\n", 2, "empty address in listen_proxy"),
        ("[global]\nproxy_trusted = 10.0.0.0/33\n", 2, "bad proxy_trusted"),
        ("[global]\nproxy_trusted = 10.0.0.1/8\n", 2, "bad proxy_trusted"),
        ("[global]\nproxy_trusted = ::1/129\n", 2, "bad proxy_trusted"),
        ("[global]\nproxy_trusted = \n", 2, "bad proxy_trusted: empty entry"),
        ("[global]\nproxy_timeout = 0\n", 2, "bad proxy_timeout"),
        ("[global]\nproxy_timeout = 1m\nproxy_timeout = 2s\n", 3, "duplicate key"),
    ]
    for text, line, what in cases:
        rc, err, path = check_config(text + "[a]\nvia = net.tcp://+/A\nbackend = 127.0.0.1:1\n")
        assert rc != 0, text
        assert f"{path}:{line}: " in err and what in err, (text, err)
    rc, err, _ = check_config(
        f"[global]\nlisten_proxy = 127.0.0.1:{p}, [::1]:{p}\n"
        "proxy_trusted = 10.0.0.0/8, 192.0.2.7, 2001:db8::/32, ::1\n"
        "proxy_timeout = 500ms\n[a]\nvia = net.tcp://+/A\nbackend = 127.0.0.1:1\n")
    assert rc == 0, err
    assert "warning" not in err, err
    # A balancer elsewhere would dial 0.0.0.0:p, and the default trusts
    # only this host: said, with the line, not refused.
    rc, err, path = check_config(
        f"[global]\nlisten = 127.0.0.1:{free_port()}\nlisten_proxy = 0.0.0.0:{p}, 127.0.0.1:{p}\n"
        "[a]\nvia = net.tcp://+/A\nbackend = 127.0.0.1:1\n")
    assert rc == 0, err
    assert f"{path}:3: warning: listen_proxy 0.0.0.0:{p} is not a loopback address" in err, err
    assert err.count("warning") == 1, err


def test_reload_applies_listen_proxy_and_proxy_trusted():
    a = service("A")
    with ProxyDaemon(a, extra="workers = 2") as d:
        s = d.proxied()
        s.sendall(v1("203.0.113.3", "198.51.100.1", 3, 808))
        assert session(s, VIA) == [b"A:hello"]
        s.close()
        # Trust only 127.0.0.2, and turn the plain listener into a proxy one.
        with open(d.config) as f:
            text = f.read()
        text = text.replace(f"listen = 127.0.0.1:{d.port}\n", "listen = 127.0.0.1:%d\n" % free_port())
        text = text.replace(f"listen_proxy = 127.0.0.1:{d.proxy_port}\n",
                            f"listen_proxy = 127.0.0.1:{d.proxy_port}, 127.0.0.1:{d.port}\n"
                            "proxy_trusted = 127.0.0.2\n")
        with open(d.config, "w") as f:
            f.write(text)
        os.kill(d.pid, signal.SIGHUP)
        wait_for(lambda: every_worker_took_the_last(d), what="the reload in both workers")
        for port in (d.proxy_port, d.port):
            s = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.2", 0))
            s.settimeout(5 * SLOW)
            s.sendall(v2("203.0.113.4", "198.51.100.1", 4, 808))
            assert session(s, VIA) == [b"A:hello"], port
            s.close()
            s = socket.create_connection(("127.0.0.1", port))
            s.settimeout(5 * SLOW)
            s.sendall(v2("203.0.113.5", "198.51.100.1", 5, 808) + preamble(VIA))
            assert recv_until_close(s) == (b"", "reset"), port
            s.close()
        recs = d.records(5)
        assert Counter((r["client_ip"], r["outcome"]) for r in recs) == {
            ("203.0.113.3", "closed"): 1, ("203.0.113.4", "closed"): 2,
            ("127.0.0.1", "malformed"): 2}, recs
    assert a.accepted >= 1


if __name__ == "__main__":
    run_tests(globals())
