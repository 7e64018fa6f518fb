"""listen_proxy against a real balancer: HAProxy in front of nettcpd with
send-proxy-v2 and send-proxy (v1), and two nettcpd instances behind one
HAProxy (nettcpd(8), SCALE-OUT): each access log shows the real client's
address and port, not HAProxy's.  Needs haproxy (scripts/install-test-deps);
skipped with a notice (exit 77) without it."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import SLOW, Daemon, free_port, run_tests, wait_for  # noqa: E402
from test_sessions import service, session  # noqa: E402

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


def proxied_daemon(a):
    """nettcpd with only a listen_proxy listener (proxy_trusted's default,
    loopback, takes HAProxy's connections) and its access log."""
    port = free_port()
    d = Daemon(raw_config="")
    access = os.path.join(d.dir, "access.jsonl")
    with open(d.config, "w") as f:
        f.write(f"[global]\nlisten_proxy = 127.0.0.1:{port}\naccess_log = {access}\n"
                f"log_level = debug\n[a]\nvia = net.tcp://+/A\nbackend = {a.addr}\n")
    d.port = port
    d.access = access
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


def test_two_instances_behind_one_haproxy_both_see_the_real_client():
    """Scale-out: N identical nettcpd behind one balancer sending PROXY v2."""
    a = service("A")
    d1, d2 = proxied_daemon(a), proxied_daemon(a)
    with d1, d2, HAProxy([f"127.0.0.1:{d1.port}", f"127.0.0.1:{d2.port}"],
                         "send-proxy-v2") as hap:
        seen = clients_through(hap, 8)
        wait_for(lambda: len(records(d1)) + len(records(d2)) == 8,
                 what="8 access-log records in all")
        r1, r2 = records(d1), records(d2)
        assert r1 and r2, (r1, r2)   # round robin: both served
        logged = sorted((r["client_ip"], r["client_port"]) for r in r1 + r2)
        assert logged == sorted(seen), (logged, seen)
        assert {ip for ip, _ in logged} == {"127.0.0.3", "127.0.0.4"}


if __name__ == "__main__":
    if shutil.which("haproxy") is None:
        print("SKIP: haproxy not installed (scripts/install-test-deps)")
        sys.exit(77)
    run_tests(globals())
