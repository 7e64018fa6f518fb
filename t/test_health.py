"""Active health checks (check_interval): a real net.tcp probe of each
member -- connect, a preamble for check_via, the ack, End both ways -- not
a bare connect.  A member that answers TCP but faults the Via is taken down
after fall checks, logged once, given no client session, shown 0 by
nettcpd_backend_up; it is brought back after rise passes.  Dead, silent,
garbage-speaking and unix members; checks off by default; a reload that
changes check_via; -t with FILE:LINE.  Real daemon, real sockets."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, Backend, Daemon,  # noqa: E402
                          fault_record, free_port, preamble,
                          read_preamble, recv_exact, recv_until_close, run_tests,
                          sized_envelope, wait_for)
from test_sessions import session  # noqa: E402
from test_metrics import scrape, text_string_to_metric_families, v  # noqa: E402

VIA = "net.tcp://h/Calc"


def read_mbint(c):
    n, shift = 0, 0
    while True:
        b = recv_exact(c, 1)[0]
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n


def service(c, b):
    """A WCF-like service whose behaviour the test changes: mode "ok"
    serves the Via paths in b.serves (EndpointNotFound for others), "silent"
    never answers, "garbage" answers like a web server.  Counts the
    preambles (checks and sessions) and the sessions with an envelope."""
    pre = read_preamble(c)
    with b.lock:
        b.preambles += 1
    if b.mode == "silent":
        c.recv(1)     # until the peer goes
        return
    if b.mode == "garbage":
        c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        return
    if b.mode == "bigfault":
        # A Fault of 2^31 - 1 bytes announced, then nothing: refused at
        # its size, not waited for.
        c.sendall(b"\x08\xff\xff\xff\xff\x07")
        c.recv(1)
        return
    # A path served, under any host (the check asks for localhost).
    if not any(path.encode() + b"\x03" in pre for path in b.serves):
        c.sendall(fault_record("EndpointNotFound"))
        return
    c.sendall(b"\x0b")
    counted = False
    while True:
        t = c.recv(1)
        if not t:
            return
        if t == b"\x07":
            c.sendall(b"\x07")
            c.recv(1)
            return
        assert t == b"\x06", t
        payload = recv_exact(c, read_mbint(c))
        if not counted:
            counted = True
            with b.lock:
                b.sessions += 1
        c.sendall(sized_envelope(b.name.encode() + b":" + payload))


def member(name, serves=("/Calc",), mode="ok", path=None):
    b = Backend(service, name=name, path=path)
    b.mode, b.serves, b.preambles, b.sessions = mode, list(serves), 0, 0
    return b


def fleet(backend, route="", extra_global="", vias=("net.tcp://+/Calc",)):
    port = free_port()
    via_lines = "".join(f"via = {x}\n" for x in vias)
    cfg = (f"[global]\nlisten = 127.0.0.1:{port}\nlog_level = debug\n"
           f"workers = 1\n{extra_global}\n[calc]\n{via_lines}"
           f"backend = {backend}\n{route}\n")
    d = Daemon(raw_config=cfg)
    d.port = port
    return d


def call(port, payload=b"x"):
    s = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    try:
        replies = session(s, VIA, [payload])
    finally:
        s.close()
    assert isinstance(replies, list) and len(replies) == 1, replies
    return replies[0].partition(b":")[0].decode()


# Checks often, with a timeout a loaded machine does not reach on loopback.
FAST = "check_interval = 50ms\ncheck_timeout = 1s\nrise = 2\nfall = 3\n"


def metrics_on():
    """Metrics are always built; the parser is python3-prometheus-client."""
    assert text_string_to_metric_families is not None, "no prometheus_client"
    return True


def test_checks_off_by_default():
    a = member("a")
    with fleet(a.addr) as d:
        time.sleep(1.0)
        assert a.accepted == 0, "a member was contacted without a client"
        assert call(d.port) == "a"
    a.close()


def test_member_that_faults_the_via_goes_down_then_up():
    a, b = member("a"), member("b", serves=())
    mport = free_port()
    extra = f"metrics = 127.0.0.1:{mport}" if metrics_on() else ""
    with fleet(f"{a.addr}, {b.addr}", FAST, extra) as d:
        d.wait_log(f"backend {b.addr} of route [calc] is down", 15)
        log = d.log()
        assert "does not serve net.tcp://localhost/Calc" in log, log
        assert "EndpointNotFound" in log, log
        before = b.preambles
        wait_for(lambda: b.preambles >= before + 5, 10 * SLOW, "more checks")
        # Once, however many checks fault.
        said = f"notice: health check of backend {b.addr} for route [calc]: "
        assert d.log().count(said) == 1, d.log()
        assert d.log().count(f"backend {b.addr} of route [calc] is down") == 1
        assert f"backend {a.addr} of route [calc] is down" not in d.log()
        for _ in range(20):
            assert call(d.port) == "a"
        assert b.sessions == 0
        if extra:
            m, types = scrape(mport)
            assert types["nettcpd_backend_checks"] == "counter", types
            assert v(m, "nettcpd_backend_up", route="calc", backend=b.addr) == 0
            assert v(m, "nettcpd_backend_up", route="calc", backend=a.addr) == 1
            assert v(m, "nettcpd_backend_checks_total", route="calc",
                     backend=b.addr, result="fault") >= 3
            assert v(m, "nettcpd_backend_checks_total", route="calc",
                     backend=a.addr, result="ok") >= 3
            assert v(m, "nettcpd_backend_checks_total", route="calc",
                     backend=a.addr, result="fault") == 0
        # It starts serving the Via: up after rise checks, sessions again.
        b.serves.append("/Calc")
        d.wait_log(f"backend {b.addr} of route [calc] is up: 2 health checks "
                   "in a row passed", 15)
        names = {call(d.port) for _ in range(10)}
        assert names == {"a", "b"}, names
        if extra:
            m, _ = scrape(mport)
            assert v(m, "nettcpd_backend_up", route="calc", backend=b.addr) == 1
    a.close()
    b.close()


def test_dead_silent_and_garbage_members_go_down():
    a = member("a")
    silent, garbage = member("s", mode="silent"), member("g", mode="garbage")
    big = member("f", mode="bigfault")
    dead = f"127.0.0.1:{free_port()}"
    mport = free_port()
    extra = f"metrics = 127.0.0.1:{mport}" if metrics_on() else ""
    with fleet(f"{a.addr}, {dead}, {silent.addr}, {garbage.addr}, {big.addr}",
               FAST, extra) as d:
        for addr, why in ((dead, "connect: Connection refused"),
                          (silent.addr, "no whole answer within check_timeout"),
                          (garbage.addr, "not a net.tcp answer: neither an ack nor a Fault"),
                          (big.addr, "not a net.tcp answer: a Fault size of 0 or over 256")):
            d.wait_log(f"backend {addr} of route [calc] is down: 3 health "
                       f"checks in a row failed, the last: {why}", 15)
        for _ in range(10):
            assert call(d.port) == "a"
        assert silent.sessions == garbage.sessions == big.sessions == 0
        if extra:
            m, _ = scrape(mport)
            for addr, result in ((dead, "refused"), (silent.addr, "timeout"),
                                 (garbage.addr, "error"), (big.addr, "error")):
                assert v(m, "nettcpd_backend_checks_total", route="calc",
                         backend=addr, result=result) >= 3, (addr, result)
                assert v(m, "nettcpd_backend_up", route="calc", backend=addr) == 0
    for b in (a, silent, garbage, big):
        b.close()


def test_a_client_connect_does_not_bring_up_a_checked_down_member():
    """Every member down: the route still tries one (never refused without
    a connect), and its connect succeeding says nothing of the Via."""
    b = member("b", serves=())
    with fleet(b.addr, FAST) as d:
        d.wait_log(f"backend {b.addr} of route [calc] is down", 15)
        s = socket.create_connection(("127.0.0.1", d.port), timeout=10 * SLOW)
        s.sendall(preamble(VIA))
        assert recv_until_close(s)[0] == fault_record("EndpointNotFound")
        s.close()
        before = b.preambles
        wait_for(lambda: b.preambles >= before + 3, 10 * SLOW, "more checks")
        assert f"backend {b.addr} of route [calc] is up" not in d.log(), d.log()
    b.close()


def test_unix_members_are_checked():
    tmp = tempfile.mkdtemp(prefix="nettcpd-health-")
    good = member("u", path=os.path.join(tmp, "good.sock"))
    bad = member("v", serves=(), path=os.path.join(tmp, "bad.sock"))
    with fleet(f"{good.addr}, {bad.addr}", FAST) as d:
        d.wait_log(f"backend {bad.addr} of route [calc] is down", 15)
        wait_for(lambda: good.preambles >= 3, 10 * SLOW, "checks of the good one")
        assert f"backend {good.addr} of route [calc] is down" not in d.log()
        for _ in range(10):
            assert call(d.port) == "u"
    good.close()
    bad.close()


def test_reload_changes_check_via():
    other = "net.tcp://h/Other"
    a = member("a")          # serves /Calc only
    route = FAST + "check_via = {}\n"
    vias = ("net.tcp://+/Calc", "net.tcp://+/Other")
    with fleet(a.addr, route.format(other), vias=vias) as d:
        d.wait_log(f"backend {a.addr} of route [calc] is down", 15)
        assert f"does not serve {other}" in d.log()
        with open(d.config) as f:
            cfg = f.read()
        with open(d.config, "w") as f:
            f.write(cfg.replace(f"check_via = {other}", f"check_via = {VIA}"))
        os.kill(d.pid, signal.SIGHUP)
        d.wait_log(f"backend {a.addr} of route [calc] is up: 2 health checks "
                   "in a row passed", 15)
        assert call(d.port) == "a"
        # Back to /Other, then checks turned off by a reload: the member a
        # check held down is let go at once.
        with open(d.config, "w") as f:
            f.write(cfg)
        os.kill(d.pid, signal.SIGHUP)
        wait_for(lambda: d.log().count(f"backend {a.addr} of route [calc] is "
                                       "down") == 2, 10 * SLOW, "down again")
        with open(d.config, "w") as f:
            f.write(cfg.replace(route.format(other), ""))
        os.kill(d.pid, signal.SIGHUP)
        d.wait_log(f"backend {a.addr} of route [calc] is up: no longer checked", 15)
        assert call(d.port) == "a"
    a.close()


def test_config_errors_name_file_and_line():
    head = ("[global]\nlisten = 127.0.0.1:1\n[calc]\nvia = net.tcp://+/Calc\n"
            "backend = 127.0.0.1:1\n[other]\nvia = net.tcp://+/Other\n"
            "backend = 127.0.0.1:2\n[calc2]\nvia = net.tcp://+/Calc2\n"
            "backend = 127.0.0.1:3\n")
    bad = {
        "check_interval = soon": "bad check_interval 'soon'",
        "check_interval = 0s": "bad check_interval",
        "check_interval = 1s\ncheck_timeout = -1s": "bad check_timeout",
        "check_interval = 1s\nrise = 0": "bad rise '0'",
        "check_interval = 1s\nfall = many": "bad fall 'many'",
        "check_interval = 1s\nfall = 1001": "bad fall",
        "rise = 2": "rise without check_interval",
        "check_via = net.tcp://h/Calc2": "check_via without check_interval",
        "check_interval = 1s\ncheck_via = net.tcp://h/Other":
            "check_via 'net.tcp://h/Other' routes to [other], not to route [calc2]",
        "check_interval = 1s\ncheck_via = net.tcp://h/Nowhere":
            "routes nowhere",
        "check_interval = 1s\ncheck_via = http://h/Calc2": "bad check_via",
        "check_interval = 1s\ncheck_interval = 2s": "duplicate key 'check_interval'",
    }
    for line, want in bad.items():
        d = Daemon(raw_config=head + line + "\n")
        r = subprocess.run([NETTCPD, "-t", "-c", d.config], capture_output=True,
                           text=True)
        assert r.returncode != 0, (line, r.stderr)
        where = 12 + line.count("\n")
        assert f"{d.config}:{where}: " in r.stderr, (line, r.stderr)
        assert want in r.stderr, (line, r.stderr)
    good = head + ("check_interval = 5s\ncheck_timeout = 1s\nrise = 1\nfall = 2\n"
                   "check_via = net.tcp://host.example:808/Calc2/x\n")
    d = Daemon(raw_config=good)
    r = subprocess.run([NETTCPD, "-t", "-c", d.config], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


if __name__ == "__main__":
    run_tests(globals())
