"""Backend lists: failover before the client sees anything, weighted
balance, backup members, leastconn and first, passive health (a member
skipped after fail_threshold failed connects, tried again after
fail_timeout, each change logged once), EndpointUnavailable only when
every member failed, the per-backend metrics read by a Prometheus text
parser, long config lines.  Real daemon, real sockets: the members are
services on loopback that the tests stop and start."""

import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, Daemon,  # noqa: E402
                          fault_record, free_port, preamble, recv_until_close,
                          run_tests, wait_for)
from test_sessions import session  # noqa: E402
from test_metrics import scrape, text_string_to_metric_families, v  # noqa: E402

VIA = "net.tcp://h/Calc"


class Member:
    """A WCF-like service on a fixed loopback port that can be stopped as a
    service host closes (stop) and started again on the same port.  Each
    session's reply names the member; sessions and active count them."""

    def __init__(self, name, port=None):
        self.name = name
        self.port = port or free_port()
        self.sessions = 0
        self.active = 0
        self.lock = threading.Lock()
        self.sock = None
        self.idle = set()       # connections waiting for a preamble

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(512)
        self.sock = s
        threading.Thread(target=self._loop, args=(s,), daemon=True).start()
        return self

    def stop(self):
        """Stop as a service host closes: no new connections, the
        connections waiting for their next preamble closed, the sessions
        under way let run to their End, then their connections closed."""
        s, self.sock = self.sock, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self.lock:
            idle, self.idle = self.idle, set()
        for c in idle:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _loop(self, s):
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        from test_sessions import Reader
        from nettcpd_test import sized_envelope
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.settimeout(30 * SLOW)
        r = Reader(c)
        try:
            while True:
                with self.lock:
                    if self.sock is None:
                        return
                    self.idle.add(c)
                pre = r.preamble()
                with self.lock:
                    self.idle.discard(c)
                    if pre is None or self.sock is None:
                        return
                    self.sessions += 1
                    self.active += 1
                try:
                    c.sendall(b"\x0b")
                    while True:
                        t, payload = r.record()
                        if t == 0x06:
                            c.sendall(sized_envelope(self.name.encode() + b":" + payload))
                        elif t == 0x07:
                            c.sendall(b"\x07")
                            break
                        else:
                            return
                finally:
                    with self.lock:
                        self.active -= 1
        except OSError:
            pass
        finally:
            with self.lock:
                self.idle.discard(c)
            c.close()


def call(port, payload=b"x"):
    """One whole session on a new client connection: the member's name."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    try:
        replies = session(s, VIA, [payload])
    finally:
        s.close()
    assert isinstance(replies, list) and len(replies) == 1, replies
    name, _, echoed = replies[0].partition(b":")
    assert echoed == payload, replies
    return name.decode()


def fleet(backend, extra_route="", extra_global="", **kw):
    port = free_port()
    cfg = (f"[global]\nlisten = 127.0.0.1:{port}\nlog_level = debug\n"
           "log_client_lines = 0\n"
           f"{extra_global}\n[calc]\nvia = net.tcp://+/Calc\n"
           f"backend = {backend}\n{extra_route}\n")
    d = Daemon(raw_config=cfg, **kw)
    d.port = port
    return d


def check(cfg):
    """nettcpd -t on cfg: (exit status, stderr)."""
    d = Daemon(raw_config=cfg)
    r = subprocess.run([NETTCPD, "-t", "-c", d.config], capture_output=True,
                       text=True)
    return r.returncode, r.stderr, d.config


def test_config_errors_name_file_and_line():
    head = "[global]\nlisten = 127.0.0.1:1\n[calc]\nvia = net.tcp://+/Calc\n"
    bad = {
        "backend = 127.0.0.1:1, nowhere": "bad backend member 'nowhere'",
        "backend = 127.0.0.1:1 weight=0": "weight",
        "backend = 127.0.0.1:1 weight=x": "weight",
        "backend = 127.0.0.1:1 weight=257": "weight",
        "backend = 127.0.0.1:1 heavy": "unknown option 'heavy'",
        "backend = 127.0.0.1:1 backup, 127.0.0.1:2 backup": "every member",
        "backend = 127.0.0.1:1, 127.0.0.1:1": "duplicate member",
        "backend = 127.0.0.1:1, , 127.0.0.1:2": "empty member",
        "backend = 127.0.0.1:1,": "empty member",
        "backend = 127.0.0.1:1\nbalance = random": "unknown balance 'random'",
        "backend = 127.0.0.1:1\nfail_threshold = 0": "fail_threshold",
        "backend = 127.0.0.1:1\nfail_timeout = soon": "fail_timeout",
        "backend = 127.0.0.1:1\nbalance = first\nbalance = first": "duplicate key 'balance'",
    }
    for line, want in bad.items():
        rc, err, path = check(head + line + "\n")
        assert rc != 0, (line, err)
        where = 5 + line.count("\n")
        assert f"{path}:{where}: " in err, (line, err)
        assert want in err, (line, err)
    good = (head + "backend = 127.0.0.1:1, [::1]:2 weight=3 , 127.0.0.1:3 backup "
            "weight=2\nbalance = leastconn\nfail_threshold = 5\nfail_timeout = 2s\n")
    rc, err, _ = check(good)
    assert rc == 0, err


def test_long_lines_a_via_of_2048_bytes_and_a_long_list():
    members = [Member(f"m{i}").start() for i in range(2)]
    dead = ", ".join(f"127.0.0.1:{free_port()} backup" for _ in range(12))
    backend = ", ".join(m.addr for m in members) + ", " + dead
    assert len(backend) > 300
    path = "/" + "p" * (2048 - len("net.tcp://h/"))
    via = "net.tcp://h" + path
    assert len(via) == 2048
    port = free_port()
    cfg = (f"[global]\nlisten = 127.0.0.1:{port}\n[calc]\nvia = net.tcp://+{path}\n"
           f"backend = {backend}\n")
    with Daemon(raw_config=cfg) as d:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        replies = session(s, via, [b"long"])
        s.close()
        assert replies in ([b"m0:long"], [b"m1:long"]), replies
    # Past the limit: FILE:LINE, not a line cut in two.
    rc, err, p = check("[global]\nlisten = 127.0.0.1:1\n[calc]\nvia = net.tcp://+/"
                       + "q" * 9000 + "\nbackend = 127.0.0.1:1\n")
    assert rc != 0 and f"{p}:4: line too long" in err, err
    for m in members:
        m.stop()


def test_failover_on_refused_connect_is_invisible():
    live = Member("live").start()
    dead = f"127.0.0.1:{free_port()}"
    access = os.path.join(tempfile.mkdtemp(prefix="nettcpd-fleet-"), "access.jsonl")
    with fleet(f"{dead}, {live.addr}", "balance = first",
               extra_global=f"access_log = {access}") as d:
        for _ in range(5):
            assert call(d.port) == "live"
        d.wait_log("trying the next member")

        def records():
            try:
                with open(access) as f:
                    return [json.loads(line) for line in f]
            except FileNotFoundError:
                return []
        wait_for(lambda: len(records()) == 5, 5, "5 access records")
        # Each names the member that served it.
        assert {(r["backend"], r["outcome"]) for r in records()} == \
            {(live.addr, "closed")}, records()
    live.stop()


def blackhole():
    """A listener whose accept queue is full: the kernel drops further
    SYNs, so a connect to it hangs until the dialler's own timeout.
    Returns it and the connections that fill it, to be closed."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(0)
    fill = []
    for _ in range(8):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(s.getsockname())
        except BlockingIOError:
            pass
        fill.append(c)
    time.sleep(0.2)
    return s, fill


def test_failover_on_timed_out_connect():
    live = Member("live").start()
    hole, fill = blackhole()
    addr = "127.0.0.1:%d" % hole.getsockname()[1]
    try:
        with fleet(f"{addr}, {live.addr}", "balance = first",
                   extra_global="connect_timeout = 300ms") as d:
            started = time.time()
            assert call(d.port) == "live"
            assert time.time() - started >= 0.29
            d.wait_log(f"backend {addr}: connect_timeout expired; trying the "
                       f"next member, {live.addr}")
    finally:
        for c in fill:
            c.close()
        hole.close()
        live.stop()


def dropper(how):
    """A member going away under its clients, as a restart does: it accepts,
    reads the preamble (or not), then closes (FIN) or resets (RST) without
    a word.  Returns its socket and the count of connections it dropped."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    dropped = []

    def loop():
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            if how != "at-accept":
                c.settimeout(5 * SLOW)
                try:
                    c.recv(4096)
                except OSError:
                    pass
            if how in ("rst", "at-accept"):
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                             struct.pack("ii", 1, 0))
            c.close()
            dropped.append(1)
    threading.Thread(target=loop, daemon=True).start()
    return s, dropped


def test_a_new_connection_dropped_before_the_answer_fails_over():
    """A member that takes the connection and then closes or resets it
    before answering the preamble (a restart resets its accept backlog):
    the preamble goes to the next member and the call succeeds; each drop
    counts against the member, and the log says it was tried."""
    for how in ("fin", "rst", "at-accept"):
        live = Member("live").start()
        drop, dropped = dropper(how)
        addr = "127.0.0.1:%d" % drop.getsockname()[1]
        try:
            with fleet(f"{addr}, {live.addr}", "balance = first\nfail_threshold = 100") as d:
                for _ in range(5):
                    assert call(d.port) == "live", how
                assert len(dropped) == 5, (how, dropped)
                d.wait_log(f"backend {addr}: ")
                assert "trying the next member" in d.log(), d.log()
        finally:
            drop.close()
            live.stop()


def test_a_pipelined_envelope_is_never_replayed_to_another_member():
    """The client's first envelope went with its preamble: the member may
    have acted on it, so a drop before the answer closes the client's
    connection as the member closed it, and nothing goes elsewhere."""
    live = Member("live").start()
    drop, dropped = dropper("fin")
    addr = "127.0.0.1:%d" % drop.getsockname()[1]
    try:
        with fleet(f"{addr}, {live.addr}", "balance = first") as d:
            s = d.connect()
            s.sendall(preamble(VIA) + b"\x06\x01x")
            out, _ = recv_until_close(s)
            s.close()
            assert out == b"", out
            assert live.sessions == 0, live.sessions
    finally:
        drop.close()
        live.stop()


def test_endpoint_unavailable_only_when_every_member_failed():
    dead = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    with fleet(", ".join(dead)) as d:
        s = d.connect()
        s.sendall(preamble(VIA))
        assert recv_until_close(s)[0] == fault_record("EndpointUnavailable")
        s.close()
        log = d.log()
        for a in dead:
            assert f"{a}: connect" in log, log
        assert "every backend" in log, log


def test_rolling_restart_of_three_members_fails_no_call():
    members = [Member(f"m{i}").start() for i in range(3)]
    backend = ", ".join(m.addr for m in members)
    with fleet(backend, extra_global="connect_timeout = 2s") as d:
        stop = threading.Event()
        counts = {"ok": 0, "failed": 0}
        errors = []

        def loop():
            while not stop.is_set():
                try:
                    call(d.port, b"call")
                    counts["ok"] += 1
                except Exception as e:  # noqa: BLE001 - every failure counts
                    counts["failed"] += 1
                    errors.append(repr(e))
        threads = [threading.Thread(target=loop) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for m in members:
                time.sleep(0.3)
                m.stop()
                before = counts["ok"]
                wait_for(lambda: counts["ok"] >= before + 20, 10,
                         "calls while a member is down")
                m.start()
                time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join()
        print(f"  rolling restart of 3 members under 4 client loops: "
              f"{counts['ok']} calls, {counts['failed']} failed; sessions per "
              f"member {[m.sessions for m in members]}; "
              f"{d.log().count('trying the next member')} failovers")
        assert counts["failed"] == 0, (counts, errors[:5])
        assert counts["ok"] > 100, counts
        for m in members:
            assert m.sessions > 0, [x.sessions for x in members]
    for m in members:
        m.stop()


def test_distribution_within_five_percent_of_the_weights():
    members = [Member(f"m{i}").start() for i in range(3)]
    weights = [1, 2, 5]
    backend = ", ".join(f"{m.addr} weight={w}" for m, w in zip(members, weights))
    with fleet(backend) as d:
        for _ in range(1000):
            call(d.port)
    total = sum(m.sessions for m in members)
    assert total == 1000, total
    for m, w in zip(members, weights):
        share = m.sessions / total
        assert abs(share - w / sum(weights)) <= 0.05, ([x.sessions for x in members])
        m.stop()


def test_backup_serves_only_when_every_primary_is_down():
    p1, p2, b = Member("p1").start(), Member("p2").start(), Member("b").start()
    with fleet(f"{p1.addr}, {b.addr} backup, {p2.addr}", "fail_timeout = 1s") as d:
        seen = {call(d.port) for _ in range(20)}
        assert seen == {"p1", "p2"}, seen
        p1.stop()
        seen = {call(d.port) for _ in range(10)}
        assert seen == {"p2"}, seen
        p2.stop()
        assert {call(d.port) for _ in range(5)} == {"b"}
        p1.start()
        wait_for(lambda: call(d.port) == "p1", 15, "p1 back before the backup")
    for m in (p1, p2, b):
        m.stop()


def test_leastconn_and_first():
    a, b = Member("a").start(), Member("b").start()
    with fleet(f"{a.addr}, {b.addr}", "balance = first") as d:
        assert {call(d.port) for _ in range(10)} == {"a"}
    with fleet(f"{a.addr} weight=1, {b.addr} weight=3", "balance = leastconn") as d:
        # Sessions held open (no End) until one is on a: then a has at
        # least 1 per weight, b at most 1 held and 1 just ending (its
        # count falls a moment after the client has its End) for 3.
        held = []
        while a.active == 0:
            assert len(held) < 2, (a.active, b.active)
            s = d.connect()
            s.sendall(preamble(VIA))
            assert s.recv(1) == b"\x0b"
            held.append(s)
            wait_for(lambda: a.active + b.active == len(held), 5, "held sessions")
        assert {call(d.port) for _ in range(5)} == {"b"}
        for s in held:
            s.close()
    a.stop()
    b.stop()


def test_passive_health_down_after_threshold_and_back_after_timeout():
    live = Member("live").start()
    flaky = Member("flaky")     # not started: its connects are refused
    with fleet(f"{flaky.addr}, {live.addr}",
               "fail_threshold = 2\nfail_timeout = 1s", extra_global="workers = 2") as d:
        for _ in range(10):
            assert call(d.port) == "live"
        log = d.log()
        assert log.count(f"{flaky.addr}: connect") == 2, log
        assert log.count(f"backend {flaky.addr} of route [calc] is down") == 1, log
        flaky.start()
        wait_for(lambda: call(d.port) == "flaky", 10 * SLOW, "flaky tried again")
        d.wait_log(f"backend {flaky.addr} of route [calc] is up")
        for _ in range(10):
            call(d.port)
        log = d.log()
        assert log.count(f"backend {flaky.addr} of route [calc] is up") == 1, log
        assert log.count(f"backend {flaky.addr} of route [calc] is down") == 1, log
    live.stop()
    flaky.stop()


def test_reload_applies_a_new_member_list():
    a, b = Member("a").start(), Member("b").start()
    with fleet(a.addr) as d:
        assert call(d.port) == "a"
        with open(d.config) as f:
            text = f.read()
        # A broken list changes nothing and says where.
        with open(d.config, "w") as f:
            f.write(text.replace(f"backend = {a.addr}",
                                 f"backend = {b.addr}, {b.addr} weight=0"))
        d.proc.send_signal(1)
        line = text.split("\n").index(f"backend = {a.addr}") + 1
        d.wait_log(f"{d.config}:{line}: bad backend")
        assert call(d.port) == "a"
        with open(d.config, "w") as f:
            f.write(text.replace(f"backend = {a.addr}", f"backend = {b.addr}"))
        d.proc.send_signal(1)
        wait_for(lambda: call(d.port) == "b", 10, "the new list")
    a.stop()
    b.stop()


def test_metrics_per_backend():
    if text_string_to_metric_families is None:
        print("SKIP: metrics: no Prometheus text parser")
        return
    live = Member("live").start()
    dead = f"127.0.0.1:{free_port()}"
    mport = free_port()
    with fleet(f"{dead}, {live.addr}", "fail_threshold = 1\nfail_timeout = 1h",
               extra_global=f"metrics = 127.0.0.1:{mport}\nworkers = 1") as d:
        for _ in range(4):
            assert call(d.port) == "live"
        m, types = scrape(mport)
        assert types["nettcpd_backend_up"] == "gauge"
        assert v(m, "nettcpd_backend_up", route="calc", backend=live.addr) == 1
        assert v(m, "nettcpd_backend_up", route="calc", backend=dead) == 0
        assert v(m, "nettcpd_backend_connect_failures_total", route="calc",
                 backend=dead) == 1
        assert v(m, "nettcpd_backend_connect_failures_total", route="calc",
                 backend=live.addr) == 0
        assert v(m, "nettcpd_backend_connect_duration_seconds_count", route="calc",
                 backend=live.addr) >= 1
        assert (v(m, "nettcpd_route_pool_hits_total", route="calc") +
                v(m, "nettcpd_route_pool_misses_total", route="calc")) == 4
        assert v(m, "nettcpd_route_sessions_total", route="calc") == 4
        assert v(m, "nettcpd_route_unavailable_total", route="calc") == 0
        live.stop()
        s = d.connect()
        s.sendall(preamble(VIA))
        assert recv_until_close(s)[0] == fault_record("EndpointUnavailable")
        s.close()
        m, _ = scrape(mport)
        assert v(m, "nettcpd_route_sessions_total", route="calc") == 4
        assert v(m, "nettcpd_route_unavailable_total", route="calc") == 1
        assert v(m, "nettcpd_backend_up", route="calc", backend=live.addr) == 0
        # A reload that keeps a member keeps its health and counts; one it
        # removes is no longer shown.
        with open(d.config) as f:
            text = f.read()
        with open(d.config, "w") as f:
            f.write(text.replace(f"backend = {dead}, ", "backend = "))
        d.proc.send_signal(1)
        d.wait_log("generation 2")
        m, _ = scrape(mport)
        assert ("nettcpd_backend_up", (("backend", dead), ("route", "calc"))) not in m
        assert v(m, "nettcpd_backend_up", route="calc", backend=live.addr) == 0
        assert v(m, "nettcpd_backend_connect_failures_total", route="calc",
                 backend=live.addr) == 1


if __name__ == "__main__":
    run_tests(globals())
