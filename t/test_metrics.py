"""/metrics (metrics = ADDR:PORT): scraped before and after a known load,
read by a real Prometheus text parser (Debian's python3-prometheus-client),
and every value that load moves checked against it: connections by
outcome, sessions and bytes per route (bytes against the access log's own
count), faults by name, preamble errors by kind, backend connect failures
and latency, the backend pool, TLS handshakes, reloads and the generation.
Also: the listener serves /metrics only, never on the shared port."""

import calendar
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, WRAPPER, Daemon, fault_record, free_port,  # noqa: E402
                          preamble, recv_exact, recv_until_close, run_tests,
                          wait_for)
from test_sessions import service, session  # noqa: E402
import test_tls  # noqa: E402

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    # Debian's package lives where only Debian's own python3 looks.
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        text_string_to_metric_families = None


def scrape(port):
    """Every sample, keyed (name, sorted labels), as the parser reads it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    out, types = {}, {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out, types


def v(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before, after, name, **labels):
    return v(after, name, **labels) - v(before, name, **labels)


def metrics_conns(d):
    """The daemon's connections on its metrics port (ss), its listener not
    counted, those it has shut down for writing counted."""
    out = subprocess.run(["ss", "-Htnp", "state", "connected", f"sport = :{d.mport}"],
                         capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if f"pid={d.pid}," in line)


def metrics_conns_by_source(d):
    """The daemon's connections on its metrics port, by client address."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"sport = :{d.mport}"],
                         capture_output=True, text=True).stdout
    by = {}
    for line in out.splitlines():
        if f"pid={d.pid}," in line:
            peer = line.split()[3].rsplit(":", 1)[0]
            by[peer] = by.get(peer, 0) + 1
    return by


def daemon(routes_text, workers=1):
    # No pool settle period: the counts below take the pooled connection
    # for the session right after the one that left it.
    mport = free_port()
    port = free_port()
    d = Daemon(raw_config=f"[global]\nlisten = 127.0.0.1:{port}\nmetrics = 127.0.0.1:{mport}\n"
                          f"log_level = debug\npreamble_timeout = 1s\nworkers = {workers}\n"
                          f"backend_pool_settle = 0\n\n"
                          f"{routes_text}")
    d.port, d.mport = port, mport
    return d


def route(name, via, backend):
    return f"[{name}]\nvia = {via}\nbackend = {backend}\n\n"


def test_known_load_moves_each_metric_by_what_it_did():
    test_tls.make_pki()
    a = service("A")
    dead = f"127.0.0.1:{free_port()}"
    routes = (route("a", "net.tcp://+/A", a.addr) + route("dead", "net.tcp://+/Dead", dead)
              + test_tls.tls_route("secure", "net.tcp://+/Secure", a.addr))
    d = daemon(routes)
    access = os.path.join(d.dir, "access.jsonl")
    with open(d.config) as f:
        text = f.read()
    with open(d.config, "w") as f:
        f.write(text.replace("[global]\n", f"[global]\naccess_log = {access}\n", 1))
    with d:
        before, types = scrape(d.mport)
        assert types["nettcpd_connections_accepted"] == "counter"
        assert types["nettcpd_connections_active"] == "gauge"
        assert types["nettcpd_backend_connect_duration_seconds"] == "histogram"
        assert v(before, "nettcpd_generation") == 1
        # 3 sessions on one client connection, 2 more on two others: the
        # first dials the service, the 4 after it take the pooled one
        s = d.connect()
        for i in range(3):
            assert session(s, f"net.tcp://h/A/{i}", [b"x" * (100 * (i + 1))]) == \
                [b"A:" + b"x" * (100 * (i + 1))]
        s.close()
        for i in range(2):
            s = d.connect()
            assert session(s, "net.tcp://h/A/more") == [b"A:hello"]
            s.close()
        # two Vias no route takes, one dead backend
        for _ in range(2):
            s = d.connect()
            s.sendall(preamble("net.tcp://h/Nowhere"))
            assert recv_until_close(s)[0] == fault_record("EndpointNotFound")
            s.close()
        s = d.connect()
        s.sendall(preamble("net.tcp://h/Dead"))
        assert recv_until_close(s)[0] == fault_record("EndpointUnavailable")
        s.close()
        # preamble errors: a record type out of place, a version, a timeout
        s = d.connect()
        s.sendall(b"\x42junk")
        recv_until_close(s)
        s.close()
        s = d.connect()
        s.sendall(preamble("net.tcp://h/A", version=(2, 0)))
        assert recv_until_close(s)[0] == fault_record("UnsupportedVersion")
        s.close()
        s = d.connect()
        s.sendall(b"\x00\x01")
        recv_until_close(s)
        s.close()
        # TLS: one handshake that completes, one that fails
        t = test_tls.upgrade(d, "net.tcp://h/Secure")
        assert t.recv(1) == b"\x0b"
        t.close()
        s = d.connect()
        s.sendall(preamble("net.tcp://h/Secure", upgrade="application/ssl-tls"))
        assert recv_exact(s, 1) == b"\x0a"
        s.sendall(b"not a ClientHello\r\n" * 8)
        recv_until_close(s)
        s.close()
        connections = 1 + 2 + 2 + 1 + 3 + 2
        wait_for(lambda: v(scrape(d.mport)[0], "nettcpd_connections_active") == 0,
                 what="every connection closed")
        wait_for(lambda: open(access).read().count("\n") >= 3 + 2 + 2 + 1 + 3 + 2,
                 what="the access log")
        after, _ = scrape(d.mport)
    recs = [json.loads(line) for line in open(access)]

    def dl(name, **labels):
        return delta(before, after, name, **labels)

    def dall(name):
        """The change of name summed over all its labels."""
        return sum(val for (n, _), val in after.items() if n == name) - \
            sum(val for (n, _), val in before.items() if n == name)

    assert dl("nettcpd_connections_accepted_total") == connections
    finished = {o: dl("nettcpd_connections_finished_total", outcome=o)
                for o in ("closed", "faulted", "timeout", "malformed", "reset",
                          "evicted", "drained")}
    # closed: the three clients that ended their sessions; reset: the TLS
    # client that dropped its session (no close_notify, no End) and the
    # failed handshake
    assert finished == {"closed": 3, "faulted": 4, "timeout": 1, "malformed": 1,
                        "reset": 2, "evicted": 0, "drained": 0}, finished
    # the access log names outcomes as the metric does: every record's
    # outcome is a label, and each connection that ended otherwise than
    # closed wrote its last record with that outcome
    assert {r["outcome"] for r in recs} <= set(finished), recs
    for o in finished:
        if o != "closed":
            assert sum(r["outcome"] == o for r in recs) == finished[o], (o, recs)
    assert v(after, "nettcpd_connections_active") == 0
    # routed: 5 to a, 1 to dead, 2 to secure (each upgrade routes first);
    # served by a backend: a's 5 and the one TLS session whose handshake
    # was done, while dead's is counted apart, as EndpointUnavailable
    assert dl("nettcpd_sessions_total") == 8
    assert dl("nettcpd_route_sessions_total", route="a") == 5
    assert dl("nettcpd_route_sessions_total", route="dead") == 0
    assert dl("nettcpd_route_sessions_total", route="secure") == 1
    assert dl("nettcpd_route_unavailable_total", route="dead") == 1
    assert dl("nettcpd_route_unavailable_total", route="a") == 0
    for r in ("a", "dead", "secure"):
        assert v(after, "nettcpd_route_sessions_active", route=r) == 0
    a_up = sum(r["bytes_up"] for r in recs if r["route"] == "a")
    a_down = sum(r["bytes_down"] for r in recs if r["route"] == "a")
    assert a_up > 600 and a_down > 600
    assert dl("nettcpd_route_bytes_total", route="a", direction="up") == a_up
    assert dl("nettcpd_route_bytes_total", route="a", direction="down") == a_down
    assert dl("nettcpd_faults_total", fault="EndpointNotFound") == 2
    assert dl("nettcpd_faults_total", fault="EndpointUnavailable") == 1
    assert dl("nettcpd_faults_total", fault="UnsupportedVersion") == 1
    # by route and member: the one failed connect is dead's
    assert dall("nettcpd_backend_connect_failures_total") == 1
    assert dl("nettcpd_backend_connect_failures_total", route="dead",
              backend=dead) == 1
    assert dl("nettcpd_preamble_errors_total", kind="record_type") == 1
    assert dl("nettcpd_preamble_errors_total", kind="version") == 1
    assert dl("nettcpd_preamble_errors_total", kind="timeout") == 1
    # the pool (one worker, so one pool): a's first session and dead's find
    # none; a's other 4 and secure's (the same service) take a's
    assert dl("nettcpd_backend_pool_misses_total") == 2
    assert dl("nettcpd_backend_pool_hits_total") == 5
    assert dl("nettcpd_backend_pool_redials_total") == 0
    assert dl("nettcpd_route_pool_misses_total", route="a") == 1
    assert dl("nettcpd_route_pool_hits_total", route="a") == 4
    assert dl("nettcpd_route_pool_misses_total", route="dead") == 1
    assert dl("nettcpd_route_pool_hits_total", route="secure") == 1
    # a latency for the one backend connection made (dead's failed), and a
    # route time per session
    assert dall("nettcpd_backend_connect_duration_seconds_count") == 1
    assert dl("nettcpd_backend_connect_duration_seconds_bucket", route="a",
              backend=a.addr, le="+Inf") == 1
    assert 0 < dl("nettcpd_backend_connect_duration_seconds_sum", route="a",
                  backend=a.addr) < 2
    assert dl("nettcpd_route_duration_seconds_count") == 8
    assert dl("nettcpd_tls_handshakes_total") == 1
    assert dl("nettcpd_tls_handshake_failures_total") == 1
    assert v(after, "nettcpd_pipes_in_use") == 0
    a.close()


def test_reloads_and_generation():
    """Also with two workers: their counts are summed, and a route's run on
    across a reload."""
    a = service("A")
    d = daemon(route("a", "net.tcp://+/A", a.addr), workers=2)
    with d:
        before, _ = scrape(d.mport)
        for _ in range(20):
            s = d.connect()
            assert session(s, "net.tcp://h/A") == [b"A:hello"]
            s.close()
        loaded = v(before, "nettcpd_generation_loaded_timestamp_seconds")
        assert abs(loaded - time.time()) < 60
        assert 0 < v(before, "nettcpd_generation_load_duration_seconds") < 5
        time.sleep(0.05)
        with open(d.config, "a") as f:
            f.write(route("b", "net.tcp://+/B", a.addr))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("reloaded")
        with open(d.config, "a") as f:
            f.write("[broken\n")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("failed; generation 2 goes on serving")
        after, _ = scrape(d.mport)
        # the new route is counted from its first session
        s = d.connect()
        assert session(s, "net.tcp://h/B") == [b"A:hello"]
        s.close()
        s = d.connect()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        s.close()
        wait_for(lambda: v(scrape(d.mport)[0], "nettcpd_route_sessions_total", route="b") == 1,
                 what="route b counted")
        wait_for(lambda: v(scrape(d.mport)[0], "nettcpd_connections_active") == 0,
                 what="every connection closed")
        last, _ = scrape(d.mport)
    assert delta(before, last, "nettcpd_route_sessions_total", route="a") == 21
    assert delta(before, last, "nettcpd_connections_accepted_total") == 22
    assert v(last, "nettcpd_workers") == 2
    assert delta(before, after, "nettcpd_reloads_total", result="ok") == 1
    assert delta(before, after, "nettcpd_reloads_total", result="failed") == 1
    assert v(after, "nettcpd_generation") == 2
    assert v(after, "nettcpd_generation_loaded_timestamp_seconds") > loaded
    a.close()


def test_binary_upgrade_hands_the_metrics_listener_over():
    """SIGUSR2: the new process serves /metrics on the old one's socket (it
    could not bind the address while the old one holds it); after the old
    one drained, the counts are the new process's own."""
    from test_upgrade import alive, new_pid
    a = service("A")
    d = daemon(route("a", "net.tcp://+/A", a.addr))
    pid = None
    with d:
        s = d.connect()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        s.close()
        old_start = v(scrape(d.mport)[0], "nettcpd_start_time_seconds")
        d.proc.send_signal(signal.SIGUSR2)
        pid = new_pid(d)
        d.wait_log(f"nettcpd[{pid}]: info: nettcpd")
        assert f"nettcpd[{pid}]: info: listening on 127.0.0.1:{d.mport} (socket handed over)" \
            in d.log(), d.log()
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(5) == 0
        try:
            after, _ = scrape(d.mport)
            assert v(after, "nettcpd_start_time_seconds") > old_start
            assert v(after, "nettcpd_connections_accepted_total") == 0
        finally:
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not alive(pid), what="the new process to exit")
    a.close()


def test_only_metrics_on_its_own_listener():
    d = daemon("")
    with d:
        for path, code in (("/", 404), ("/metrics/x", 404)):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{d.mport}{path}", timeout=5)
                raise AssertionError(f"{path} served")
            except urllib.error.HTTPError as e:
                assert e.code == code, (path, e.code)
        req = urllib.request.Request(f"http://127.0.0.1:{d.mport}/metrics", data=b"x",
                                     method="POST")
        try:
            urllib.request.urlopen(req, timeout=5)
            raise AssertionError("POST served")
        except urllib.error.HTTPError as e:
            assert e.code == 405
        # HTTP on the shared port is a malformed preamble, never metrics
        s = d.connect()
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        got, _ = recv_until_close(s)
        s.close()
        assert b"nettcpd_" not in got
        # a scraper that connects and says nothing holds nothing up
        idle = socket.create_connection(("127.0.0.1", d.mport))
        scrape(d.mport)
        idle.close()


def test_a_flood_on_the_metrics_port_leaves_the_shared_port_alone():
    """Silent connections past the listener's limit (8 per address), a request with
    megabytes of headers: the shared port routes on, and once they are gone
    a scrape is served again."""
    a = service("A")
    d = daemon(route("a", "net.tcp://+/A", a.addr))
    with d:
        base = d.sockets()
        assert metrics_conns(d) == 0
        silent = [socket.create_connection(("127.0.0.1", d.mport)) for _ in range(40)]
        wait_for(lambda: metrics_conns(d) > 0, what="the server to take some")
        assert metrics_conns(d) <= 8, metrics_conns(d)   # its limit per address
        big = socket.create_connection(("127.0.0.1", d.mport))
        big.settimeout(5)
        try:
            big.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" +
                        b"X-Junk: " + b"j" * (4 << 20) + b"\r\n\r\n")
        except OSError:
            pass                       # refused mid-way: fine
        try:
            answer = big.recv(4096)
        except OSError:
            answer = b""
        assert b"nettcpd_" not in answer, answer[:200]
        big.close()
        for _ in range(5):
            s = d.connect()
            assert session(s, "net.tcp://h/A") == [b"A:hello"]
            s.close()
        for c in silent:
            c.close()
        wait_for(lambda: v(scrape(d.mport)[0], "nettcpd_route_sessions_total",
                           route="a") == 5, what="a scrape after the flood")
        # every connection to the metrics port is closed (the one socket
        # more than at the start is the backend connection in the pool)
        wait_for(lambda: metrics_conns(d) == 0, what="the metrics connections closed")
        assert d.sockets() == base + 1, d.sockets()
    a.close()


class SlowLoris:
    """count connections to the metrics port, each sending one byte of a
    request every period seconds and never finishing it; a connection the
    server closed is opened again at its next byte, from the same source.
    Sources: the 127.0.0.x addresses the connections are bound to, in turn."""

    def __init__(self, port, count, sources, period=3.0):
        self.port, self.period = port, period
        self.sources = [sources[i % len(sources)] for i in range(count)]
        self.socks = [None] * count
        self.opened = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, i):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((self.sources[i], 0))
        s.settimeout(2)
        s.connect(("127.0.0.1", self.port))
        self.socks[i] = s
        self.opened += 1

    def _run(self):
        text = b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"s" * 4096
        sent = 0
        while not self.stop.is_set():
            for i, s in enumerate(self.socks):
                try:
                    if s is None:
                        self._open(i)
                    self.socks[i].send(text[sent % len(text):][:1])
                except OSError:
                    if self.socks[i] is not None:
                        self.socks[i].close()
                    self.socks[i] = None
            sent += 1
            self.stop.wait(self.period)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        for s in self.socks:
            if s is not None:
                s.close()


def scrapes_under_slow_loris(sources):
    """20 slow-loris connections from sources, meanwhile 5 scrapes from
    127.0.0.1 spread over 15 s (past the attackers' reconnects): every one
    answered within 5 s."""
    d = daemon("")
    with d:
        with SlowLoris(d.mport, 20, sources) as loris:
            wait_for(lambda: loris.opened >= 20, what="20 slow connections")
            time.sleep(1)
            answered = []
            for _ in range(5):
                started = time.time()
                try:
                    scrape(d.mport)
                    answered.append(time.time() - started)
                except (OSError, AssertionError) as e:
                    answered.append(repr(e))
                time.sleep(3)
            assert all(isinstance(t, float) and t < 5 for t in answered), answered
        wait_for(lambda: metrics_conns(d) == 0, what="the metrics connections closed")


def test_slow_loris_from_the_scrapers_own_address():
    scrapes_under_slow_loris(["127.0.0.1"])


def test_slow_loris_from_other_addresses():
    scrapes_under_slow_loris([f"127.0.0.{i}" for i in range(2, 12)])


def test_a_request_has_5_seconds_however_it_trickles():
    """A request that is not whole 5 s after its connection was accepted is
    closed, though a byte came every half second."""
    d = daemon("")
    with d:
        s = socket.create_connection(("127.0.0.1", d.mport))
        s.settimeout(0.5)
        started, closed = time.time(), None
        while time.time() - started < 15:
            try:
                s.send(b"G")
                if s.recv(1) == b"":
                    closed = time.time() - started
                    break
            except socket.timeout:
                continue
            except OSError:
                closed = time.time() - started
                break
        s.close()
        assert closed is not None and 4.5 < closed < 8, closed


def test_last_reload_successful_gauge():
    """1 at start, 0 after a reload that failed, 1 after the next good one
    (increase(reloads failed) stays above 0 for its whole range)."""
    a = service("A")
    d = daemon(route("a", "net.tcp://+/A", a.addr))
    with d:
        gauge = "nettcpd_config_last_reload_successful"
        first, types = scrape(d.mport)
        assert types[gauge] == "gauge"
        assert (gauge, ()) in first and v(first, gauge) == 1
        good = open(d.config).read()
        with open(d.config, "a") as f:
            f.write("[broken\n")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("failed; generation 1 goes on serving")
        assert v(scrape(d.mport)[0], gauge) == 0
        with open(d.config, "w") as f:
            f.write(good + route("b", "net.tcp://+/B", a.addr))
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("reloaded")
        after, _ = scrape(d.mport)
        assert v(after, gauge) == 1 and v(after, "nettcpd_generation") == 2
    a.close()


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def test_process_family_matches_proc():
    """process_* as Prometheus' client libraries name them, against what
    /proc says of the daemon."""
    d = daemon("")
    with d:
        samples, types = scrape(d.mport)
        fields = proc_stat(d.pid)
        ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGESIZE")
        fds = len(os.listdir(f"/proc/{d.pid}/fd"))
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        with open(f"/proc/{d.pid}/limits") as f:
            max_fds = next(int(line.split()[3]) for line in f
                           if line.startswith("Max open files"))
        for name, kind in (("process_cpu_seconds", "counter"), ("process_open_fds", "gauge"),
                           ("process_max_fds", "gauge"),
                           ("process_virtual_memory_bytes", "gauge"),
                           ("process_resident_memory_bytes", "gauge"),
                           ("process_start_time_seconds", "gauge")):
            assert types.get(name) == kind, (name, types.get(name))
        # the scrape's own connection is open while it is counted
        assert abs(v(samples, "process_open_fds") - fds) <= 2, (samples, fds)
        # valgrind keeps descriptors of its own below the limit /proc shows
        if not WRAPPER:
            assert v(samples, "process_max_fds") == max_fds
        rss = int(fields[21]) * page
        assert 0.8 * rss < v(samples, "process_resident_memory_bytes") < 1.25 * rss
        vsz = int(fields[20])
        assert 0.8 * vsz < v(samples, "process_virtual_memory_bytes") < 1.25 * vsz
        start = btime + int(fields[19]) / ticks
        assert abs(v(samples, "process_start_time_seconds") - start) < 0.02
        assert abs(v(samples, "process_start_time_seconds") - time.time()) < 60
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        assert 0 <= v(samples, "process_cpu_seconds_total") <= cpu + 0.05, (samples, cpu)


def not_after(cert):
    """The leaf's notAfter, Unix time, as openssl x509 -enddate says it."""
    r = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", cert],
                       capture_output=True, text=True, check=True)
    when = r.stdout.strip().split("=", 1)[1]
    return calendar.timegm(time.strptime(when, "%b %d %H:%M:%S %Y GMT"))


def test_certificate_expiry_per_terminating_route():
    """Per terminating route of the running generation: a reload that gives
    the route another certificate changes it, one that drops the route
    drops its series."""
    test_tls.make_pki()
    a = service("A")
    d = daemon(route("plain", "net.tcp://+/A", a.addr)
               + test_tls.tls_route("secure", "net.tcp://+/Secure", a.addr)
               + test_tls.tls_route("old", "net.tcp://+/Old", a.addr,
                                    cert="expired.pem", key="expired.key"))
    name = "nettcpd_tls_certificate_expiry_timestamp_seconds"
    with d:
        samples, types = scrape(d.mport)
        assert types[name] == "gauge"
        got = {dict(k[1])["route"]: val for k, val in samples.items() if k[0] == name}
        assert got == {"secure": not_after(test_tls.pki("server.crt")),
                       "old": not_after(test_tls.pki("expired.crt"))}, got
        assert got["secure"] != got["old"]
        text = open(d.config).read()
        with open(d.config, "w") as f:
            f.write(text.replace("server.pem", "expired.pem").replace("server.key", "expired.key")
                    .split("[old]")[0])
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("reloaded")
        samples, _ = scrape(d.mport)
        got = {dict(k[1])["route"]: val for k, val in samples.items() if k[0] == name}
        assert got == {"secure": not_after(test_tls.pki("expired.crt"))}, got
    a.close()


def test_absolute_form_request_target():
    """GET http://HOST:PORT/metrics (a proxy's form) is /metrics; its query
    is ignored; another absolute path is 404."""
    d = daemon("")
    with d:
        for target, status in ((f"http://127.0.0.1:{d.mport}/metrics", b"200"),
                               (f"HTTP://localhost/metrics?x=1", b"200"),
                               (f"http://127.0.0.1:{d.mport}/other", b"404"),
                               ("/metrics?debug=1", b"200")):
            s = socket.create_connection(("127.0.0.1", d.mport), timeout=5)
            s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            got, _ = recv_until_close(s)
            s.close()
            assert got.startswith(b"HTTP/1.1 " + status), (target, got[:100])
            assert (b"nettcpd_generation " in got) == (status == b"200"), target
        # HEAD: the headers a GET gets, with its length, and no body
        for target, status in (("/metrics", b"200"), ("/other", b"404")):
            s = socket.create_connection(("127.0.0.1", d.mport), timeout=5)
            s.sendall(f"HEAD {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            got, _ = recv_until_close(s)
            s.close()
            head, _, body = got.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 " + status) and body == b"", got[:300]
            assert int(head.lower().split(b"content-length: ")[1].split(b"\r")[0]) > 0, head


def test_out_of_descriptors_the_metrics_thread_waits_instead_of_spinning():
    """Silent clients on the shared port take every descriptor under a
    limit of 32: a scraper waits in the backlog while the metrics thread
    backs off (no busy loop on accept), and is answered once they go."""
    if WRAPPER:
        print("SKIP: a wrapper such as valgrind needs descriptors of its own")
        return
    port, mport = free_port(), free_port()
    d = Daemon(raw_config=f"[global]\nlisten = 127.0.0.1:{port}\n"
                          f"metrics = 127.0.0.1:{mport}\npreamble_timeout = 60s\n"
                          "workers = 1\nlog_level = info\n", rlimit_nofile=32)
    d.port = port
    with d:
        held = []
        for _ in range(40):
            held.append(d.connect())
        d.wait_log("Too many open files")
        late = socket.create_connection(("127.0.0.1", mport))
        late.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        time.sleep(0.3)
        cpu_before = d.cpu_seconds()
        time.sleep(1.0)
        cpu_used = d.cpu_seconds() - cpu_before
        assert cpu_used < 0.3, f"daemon used {cpu_used:.2f}s CPU while out of fds"
        assert d.log().count("metrics: accept") <= 1, d.log()
        for s in held:
            s.close()
        late.settimeout(5 * SLOW)
        got, _ = recv_until_close(late)
        late.close()
        assert got.startswith(b"HTTP/1.1 200 ") and b"nettcpd_generation " in got, got[:200]


def test_answers_nobody_reads_do_not_shut_out_a_scraper():
    """8 connections from the scraper's address ask for /metrics and never
    read the answer nor close: while they hold every slot of the address
    (being answered, or lingering after the answer), a scrape still gets
    through."""
    d = daemon("")
    with d:
        hogs = []
        for _ in range(8):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            s.connect(("127.0.0.1", d.mport))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            hogs.append(s)
        wait_for(lambda: metrics_conns(d) == 8, what="8 answers under way")
        for _ in range(3):
            scrape(d.mport)
        for s in hogs:
            s.close()


def test_a_flood_from_many_addresses_evicts_from_the_heaviest():
    """A client from one address sends half a request; 9 addresses then
    open 8 connections each, more than the 64 slots: the server holds 64 at
    most and 8 at most per address, takes the slots it needs from the
    flooding addresses, not the lone client's older one, whose request, once
    whole, is answered; and a scrape from yet another address is too."""
    d = daemon("")
    with d:
        lone = socket.socket()
        lone.bind(("127.0.0.50", 0))
        lone.connect(("127.0.0.1", d.mport))
        lone.sendall(b"GET /metrics HTTP/1.1\r\n")
        wait_for(lambda: metrics_conns(d) == 1, what="the lone client taken")
        flood = []
        for a in range(2, 11):
            for _ in range(8):
                s = socket.socket()
                s.bind((f"127.0.0.{a}", 0))
                s.connect(("127.0.0.1", d.mport))
                s.sendall(b"G")
                flood.append(s)
        wait_for(lambda: sum(metrics_conns_by_source(d).values()) == 64,
                 what="every slot taken")
        by = metrics_conns_by_source(d)
        assert max(by.values()) <= 8 and by.get("127.0.0.50") == 1, by
        lone.sendall(b"Host: x\r\n\r\n")
        lone.settimeout(5 * SLOW)
        got, _ = recv_until_close(lone)
        lone.close()
        assert got.startswith(b"HTTP/1.1 200 ") and b"nettcpd_generation " in got, got[:200]
        scrape(d.mport)
        for s in flood:
            s.close()
        wait_for(lambda: metrics_conns(d) == 0, what="the metrics connections closed")


def test_metrics_address_errors():
    """A metrics address that is a listen address, or not an address, is a
    config error naming the line."""
    port = free_port()
    for value, text in ((f"127.0.0.1:{port}", "also a listen address"),
                        ("localhost", "bad metrics"), ("127.0.0.1:0", "bad port '0'")):
        d = Daemon(raw_config=f"[global]\nlisten = 127.0.0.1:{port}\nmetrics = {value}\n")
        r = subprocess.run([NETTCPD, "-t", "-c", d.config], capture_output=True, text=True)
        assert r.returncode == 1, r
        assert f"{d.config}:3: " in r.stderr and text in r.stderr, r.stderr


if __name__ == "__main__":
    if text_string_to_metric_families is None:
        print("SKIP: test_metrics.py: no Prometheus text parser "
              "(apt-get install python3-prometheus-client)")
        sys.exit(77)
    run_tests(globals())
