"""listen_proxy against a real balancer: HAProxy in front of nettcpd with
send-proxy-v2 and send-proxy (v1), and two nettcpd instances behind one
HAProxy (nettcpd(8), SCALE-OUT): each access log shows the real client's
address and port, not HAProxy's; each instance's send_proxy = v2 names
that client (and the address it connected to, HAProxy's) to its backend;
each instance's deny refuses that client, with EndpointNotFound and no
backend dialled, and a reload of both changes whom.  Needs haproxy
(scripts/install-test-deps); skipped with a notice (exit 77) without it."""

import ipaddress
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, Daemon, fault_record, free_port, preamble,  # noqa: E402
                          recv_until_close, run_tests, wait_for)
from test_sessions import service, session  # noqa: E402
import test_proxy_send  # noqa: E402

VIA = "net.tcp://h/A/x"


class HAProxy:
    """haproxy -db in the foreground: one TCP frontend on loopback, its
    servers the given addresses, each with the given server options."""

    def __init__(self, servers, options):
        self.dir = tempfile.mkdtemp(prefix="nettcpd-haproxy-")
        self.port = free_port()
        lines = ["global", "    maxconn 256", "defaults", "    mode tcp",
                 "    timeout connect 5s", "    timeout client 30s",
                 "    timeout server 30s", "frontend fe",
                 f"    bind 127.0.0.1:{self.port}", "    default_backend be",
                 "backend be", "    balance roundrobin"]
        lines += [f"    server n{i} {addr} {options}" for i, addr in enumerate(servers)]
        self.config = os.path.join(self.dir, "haproxy.cfg")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.logpath = os.path.join(self.dir, "haproxy.log")
        self.proc = None

    def __enter__(self):
        log = open(self.logpath, "wb")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.config],
                                     stdout=log, stderr=log)
        log.close()

        def listening():
            assert self.proc.poll() is None, open(self.logpath).read()
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return True
            except OSError:
                return False
        wait_for(listening, 10, what="haproxy listening")
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(5 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, source):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5 * SLOW)
        s.bind((source, 0))
        s.connect(("127.0.0.1", self.port))
        return s


def proxied_daemon(a, route_keys=""):
    """nettcpd with only a listen_proxy listener (proxy_trusted's default,
    loopback, takes HAProxy's connections) and its access log; one worker,
    so one "took generation" line says a reload applies.  d.write(keys)
    rewrites route a's extra keys."""
    port = free_port()
    d = Daemon(raw_config="")
    access = os.path.join(d.dir, "access.jsonl")

    def write(keys):
        with open(d.config + ".new", "w") as f:
            f.write(f"[global]\nlisten_proxy = 127.0.0.1:{port}\naccess_log = {access}\n"
                    f"log_level = debug\nworkers = 1\n"
                    f"[a]\nvia = net.tcp://+/A\nbackend = {a.addr}\n{keys}\n")
        os.replace(d.config + ".new", d.config)
    write(route_keys)
    d.port = port
    d.access = access
    d.write = write
    return d


def records(d):
    """The sessions routed (the readiness probe's connection, which HAProxy
    passed on too, routed none)."""
    if not os.path.exists(d.access):
        return []
    return [r for r in (json.loads(line) for line in open(d.access).read().splitlines())
            if r["route"] is not None]


def clients_through(hap, n):
    """n sessions, from 127.0.0.3 and 127.0.0.4 by turns; the (ip, port) of
    each client."""
    seen = []
    for i in range(n):
        s = hap.client(f"127.0.0.{3 + i % 2}")
        assert session(s, VIA, [b"%d" % i]) == [b"A:%d" % i]
        seen.append(s.getsockname()[:2])
        s.close()
    return seen


def test_haproxy_send_proxy_v2_and_v1_carry_the_real_client():
    a = service("A")
    for options in ("send-proxy-v2", "send-proxy"):
        d = proxied_daemon(a)
        with d, HAProxy([f"127.0.0.1:{d.port}"], options) as hap:
            seen = clients_through(hap, 4)
            wait_for(lambda: len(records(d)) == 4, what="4 access-log records")
            logged = sorted((r["client_ip"], r["client_port"]) for r in records(d))
            assert logged == sorted(seen), (options, logged, seen)
            assert all(r["outcome"] == "closed" and r["route"] == "a"
                       for r in records(d)), records(d)
            # The log line names the client and HAProxy, which connected
            # from 127.0.0.1.
            assert f"client {seen[0][0]}:{seen[0][1]} (proxy 127.0.0.1:" in d.log(), d.log()


def parse_proxy_v2(raw):
    """A strict reading of the PROXY v2 header raw begins with, as HAProxy
    or nginx reads it: the signature, version 2 PROXY, TCP4, a length that
    holds both addresses and ports.  ((src ip, port), (dst ip, port)) and
    the bytes after the header."""
    sig = test_proxy_send.V2_SIG
    assert raw[:12] == sig, raw[:16]
    assert raw[12] == 0x21 and raw[13] == 0x11, raw[:16]   # v2 PROXY, TCP4
    length = struct.unpack("!H", raw[14:16])[0]
    assert 12 <= length <= len(raw) - 16, (length, len(raw))
    src, dst = raw[16:20], raw[20:24]
    sport, dport = struct.unpack("!HH", raw[24:28])
    return (((str(ipaddress.IPv4Address(src)), sport),
             (str(ipaddress.IPv4Address(dst)), dport)), bytes(raw[16 + length:]))


class Fleet:
    """Two nettcpd behind one HAProxy sending PROXY v2 (round robin), each
    instance with its own send_proxy = v2 backend: b[i] sees only what
    d[i] sent, so each backend connection can be matched with the access
    log of the instance that dialled it."""

    def __init__(self, route_keys):
        self.b = [test_proxy_send.service(), test_proxy_send.service()]
        self.d = [proxied_daemon(b, "send_proxy = v2\n" + route_keys) for b in self.b]
        self.hap = None

    def __enter__(self):
        for d in self.d:
            d.start()
        self.hap = HAProxy([f"127.0.0.1:{d.port}" for d in self.d], "send-proxy-v2")
        self.hap.__enter__()
        return self

    def __exit__(self, *exc):
        self.hap.__exit__(*exc)
        for d in self.d:
            d.__exit__(*exc)
        for b in self.b:
            b.close()

    def served(self, source, payload):
        """One session from source through HAProxy; its (ip, port)."""
        s = self.hap.client(source)
        test_proxy_send.session(s, "net.tcp://h/A/x", payload)
        src = s.getsockname()[:2]
        s.close()
        return src

    def denied(self, source):
        s = self.hap.client(source)
        s.sendall(preamble(VIA))
        data, how = recv_until_close(s)
        s.close()
        assert (data, how) == (fault_record("EndpointNotFound"), "eof"), (data, how)

    def reload(self, route_keys):
        for d in self.d:
            d.write("send_proxy = v2\n" + route_keys)
            d.proc.send_signal(signal.SIGHUP)
        for d in self.d:
            d.wait_log("worker 0 took generation 2")


def backend_sessions(b):
    """What backend b was sent: per connection, the client and destination
    its PROXY v2 header names, and the bytes after the header."""
    return [parse_proxy_v2(bytes(raw)) for raw in list(b.conns)]


def test_two_instances_send_proxy_v2_names_the_real_client_to_each_backend():
    """Scale-out: each of 8 clients (distinct addresses, so no pooled
    connection is shared) reaches a backend through HAProxy and one
    instance: the instance's access log names the client's address and
    port, and so does that backend's PROXY v2 header, with the address the
    client connected to (HAProxy's), the replayed preamble after it byte
    for byte."""
    with Fleet("") as f:
        hap = ("127.0.0.1", f.hap.port)
        seen = {f.served(f"127.0.0.{10 + i}", b"p%d" % i): b"p%d" % i for i in range(8)}
        wait_for(lambda: sum(len(records(d)) for d in f.d) == 8, 10,
                 what="8 access-log records in all")
        wait_for(lambda: sum(len(b.conns) for b in f.b) == 8, 10,
                 what="8 backend connections in all")
        logged = sorted((r["client_ip"], r["client_port"]) for d in f.d for r in records(d))
        assert logged == sorted(seen), (logged, seen)
        for d, b in zip(f.d, f.b):
            logged = sorted((r["client_ip"], r["client_port"]) for r in records(d))
            got = backend_sessions(b)
            assert logged, "round robin: both instances served"
            assert sorted(src for (src, _), _ in got) == logged, (got, logged)
            for (src, dst), rest in got:
                assert dst == hap, (dst, hap)
                assert rest == test_proxy_send.envelope_bytes(
                    "net.tcp://h/A/x", seen[src]), (src, rest)


def on_both(f, act, ip, outcome):
    """act() until each instance logged outcome for a client from ip:
    HAProxy's round robin, shared by its threads, does not strictly
    alternate.  Bounded; the number of acts."""
    def done():
        return all(any(r["client_ip"] == ip and r["outcome"] == outcome
                       for r in records(d)) for d in f.d)
    for n in range(1, 21):
        act()
        if done():
            return n
    wait_for(done, 5, what=f"{outcome} for {ip} on both instances")
    return n


def test_two_instances_deny_the_real_client_and_a_reload_changes_whom():
    """deny = 127.0.0.66 on both instances: 127.0.0.66 through HAProxy gets
    EndpointNotFound from each, logged as denied with its address, and no
    backend hears of it; 127.0.0.65 is served by each.  A reload of both
    to deny = 127.0.0.65 swaps the two."""
    def outcomes(recs):
        return {(r["client_ip"], r["outcome"], r["fault"]) for r in recs}

    with Fleet("deny = 127.0.0.66") as f:
        n = on_both(f, lambda: f.denied("127.0.0.66"), "127.0.0.66", "denied")
        n += on_both(f, lambda: f.served("127.0.0.65", b"ok"), "127.0.0.65", "closed")
        wait_for(lambda: sum(len(records(d)) for d in f.d) == n, 10,
                 what=f"{n} access-log records in all")
        before = [len(records(d)) for d in f.d]
        for d in f.d:
            assert outcomes(records(d)) == {
                ("127.0.0.65", "closed", None),
                ("127.0.0.66", "denied", "EndpointNotFound")}, records(d)
        for b in f.b:
            assert {src[0] for (src, _), _ in backend_sessions(b)} == {"127.0.0.65"}
        f.reload("deny = 127.0.0.65")
        n += on_both(f, lambda: f.denied("127.0.0.65"), "127.0.0.65", "denied")
        n += on_both(f, lambda: f.served("127.0.0.66", b"now"), "127.0.0.66", "closed")
        wait_for(lambda: sum(len(records(d)) for d in f.d) == n, 10,
                 what=f"{n} access-log records in all")
        for d, k in zip(f.d, before):
            assert outcomes(records(d)[k:]) == {
                ("127.0.0.65", "denied", "EndpointNotFound"),
                ("127.0.0.66", "closed", None)}, records(d)
        for b in f.b:
            assert {src[0] for (src, _), _ in backend_sessions(b)} == {
                "127.0.0.65", "127.0.0.66"}


if __name__ == "__main__":
    if shutil.which("haproxy") is None:
        print("SKIP: haproxy not installed (scripts/install-test-deps)")
        sys.exit(77)
    run_tests(globals())
