"""The access log (access_log = PATH): one JSON line per session, and per
connection that never reached one, at its end, with the right fields for
each outcome; client text escaped; SIGUSR1 reopens the file after
logrotate moved it."""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (Daemon, connect, fault_record, free_port, preamble,  # noqa: E402
                          recv_until_close, run_tests, sized_envelope, wait_for)
from test_sessions import Reader, service, session  # noqa: E402

FIELDS = ["time", "client_ip", "client_port", "listen_port", "session", "via", "route",
          "backend", "outcome", "fault", "bytes_up", "bytes_down", "duration_ms",
          "route_ms"]
# The outcome names, the same as nettcpd_connections_finished_total's labels.
OUTCOMES = {"closed", "faulted", "timeout", "malformed", "reset", "evicted", "drained"}


def records(path, n, timeout=5.0):
    """The first n records, once they are all there, each parsed."""
    def ready():
        return os.path.exists(path) and open(path).read().count("\n") >= n
    wait_for(ready, timeout, what=f"{n} access-log records")
    lines = open(path).read().splitlines()
    out = [json.loads(line) for line in lines]
    for r in out:
        assert list(r) == FIELDS, r     # every field, in the documented order
        assert r["outcome"] in OUTCOMES, r
        assert (r["fault"] is not None) == (r["outcome"] == "faulted"), r
    return out


def daemon(a):
    """Routes /A and /Dead (nothing listens there), access log in the
    daemon's directory; returns it and the log's path."""
    d = Daemon([("a", "net.tcp://+/A", a.addr),
                ("dead", "net.tcp://+/Dead", f"127.0.0.1:{free_port()}")],
               extra_global="preamble_timeout = 1s")
    log = os.path.join(d.dir, "access.jsonl")
    with open(d.config) as f:
        text = f.read()
    with open(d.config, "w") as f:
        f.write(text.replace("[global]\n", f"[global]\naccess_log = {log}\n", 1))
    return d, log


def test_one_record_per_session_and_outcome():
    a = service("A")
    d, log = daemon(a)
    with d:
        # two sessions on one connection: two records, numbered
        s = d.connect()
        assert session(s, "net.tcp://h/A/x", [b"12345"]) == [b"A:12345"]
        assert session(s, "net.tcp://h/A/y") == [b"A:hello"]
        first_port = s.getsockname()[1]
        s.close()
        # a Via no route takes, a dead backend, a malformed preamble, a
        # silent client, a reset in the middle of a session
        s = d.connect()
        s.sendall(preamble("net.tcp://h/Nowhere"))
        assert recv_until_close(s)[0] == fault_record("EndpointNotFound")
        s.close()
        s = d.connect()
        s.sendall(preamble("net.tcp://h/Dead"))
        assert recv_until_close(s)[0] == fault_record("EndpointUnavailable")
        s.close()
        s = d.connect()
        s.sendall(b"\x42junk")
        recv_until_close(s)
        s.close()
        s = d.connect()
        s.sendall(b"\x00\x01")
        recv_until_close(s)          # preamble_timeout
        s.close()
        s = d.connect()
        r = Reader(s)
        s.sendall(preamble("net.tcp://h/A"))
        assert r.record()[0] == 0x0B
        s.sendall(sized_envelope(b"x") + b"\x0c")   # a record out of place
        recv_until_close(s)
        s.close()
        got = records(log, 7)
    by = {}
    for rec in got:
        by.setdefault(rec["fault"] or rec["outcome"], []).append(rec)
    first, second = by["closed"]
    assert first["session"] == 1 and second["session"] == 2
    assert first["via"] == "net.tcp://h/A/x" and second["via"] == "net.tcp://h/A/y"
    assert first["route"] == "a" and first["backend"] == a.addr
    assert first["bytes_up"] > len(preamble("net.tcp://h/A/x")) and first["bytes_down"] > 0
    assert first["route_ms"] is not None and first["route_ms"] <= first["duration_ms"]
    assert first["client_ip"] == "127.0.0.1" and first["listen_port"] == d.port
    assert first["client_port"] == second["client_port"] == first_port
    nf = by["EndpointNotFound"][0]
    assert nf["outcome"] == "faulted" and nf["fault"] == "EndpointNotFound"
    assert nf["client_port"] != first["client_port"]
    assert nf["via"] == "net.tcp://h/Nowhere" and nf["route"] is None and nf["route_ms"] is None
    ua = by["EndpointUnavailable"][0]
    assert ua["route"] == "dead" and ua["via"] == "net.tcp://h/Dead"
    assert by["malformed"][0]["via"] is None
    assert by["timeout"][0]["duration_ms"] >= 900
    oop = by["malformed"][1]
    assert oop["route"] == "a" and oop["via"] == "net.tcp://h/A"
    assert len(got) == 7, got
    a.close()


def test_ipv6_client_ip_apart_from_its_port():
    """An IPv6 client: client_ip is the bare address (no brackets, no
    port), as Loki and Elastic parse an IP; client_port a number."""
    a = service("A")
    d, log = daemon(a)
    with open(d.config) as f:
        text = f.read()
    with open(d.config, "w") as f:
        f.write(text.replace(f"listen = 127.0.0.1:{d.port}", f"listen = [::1]:{d.port}"))
    with d:
        s = connect(d.port, host="::1")
        assert session(s, "net.tcp://h/A/six") == [b"A:hello"]
        port = s.getsockname()[1]
        s.close()
        rec = records(log, 1)[0]
    assert rec["client_ip"] == "::1" and rec["client_port"] == port, rec
    assert rec["listen_port"] == d.port and rec["outcome"] == "closed", rec
    a.close()


def test_client_text_is_escaped():
    """A Via with quotes, backslashes and control bytes cannot break the
    line: the record still parses, and says exactly what was sent."""
    a = service("A")
    d, log = daemon(a)
    with d:
        s = d.connect()
        evil = 'net.tcp://h/A/"}\n{"outcome":"forged\\'
        s.sendall(preamble(evil))
        assert s.recv(1) in (b"\x0b", b"\x08", b"")   # routed or not: its record
        s.close()
        rec = records(log, 1)[0]
    assert open(log).read().count("\n") == 1
    assert rec["outcome"] in ("malformed", "closed", "faulted"), rec
    assert rec["via"] == evil, rec
    a.close()


def test_buffered_records_are_written_at_once_at_exit():
    """Records wait in their worker's buffer for up to a second; a stop
    writes them all, the last session's and the one the drain closed."""
    a = service("A")
    d, log = daemon(a)
    with d:
        for i in range(3):
            s = d.connect()
            assert session(s, f"net.tcp://h/A/{i}") == [b"A:hello"]
            s.close()
        idle = d.connect()
        assert session(idle, "net.tcp://h/A/idle") == [b"A:hello"]
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(5) == 0
        idle.close()
    got = [json.loads(line) for line in open(log)]
    assert sorted(r["via"] for r in got) == ["net.tcp://h/A/0", "net.tcp://h/A/1",
                                            "net.tcp://h/A/2", "net.tcp://h/A/idle"], got
    a.close()


def test_sigusr1_reopens_after_logrotate():
    a = service("A")
    d, log = daemon(a)
    with d:
        s = d.connect()
        assert session(s, "net.tcp://h/A/before") == [b"A:hello"]
        s.close()
        records(log, 1)
        os.rename(log, log + ".1")       # what logrotate does
        d.proc.send_signal(signal.SIGUSR1)
        d.wait_log("SIGUSR1 received: access log reopened")
        s = d.connect()
        assert session(s, "net.tcp://h/A/after") == [b"A:hello"]
        s.close()
        after = records(log, 1)
        time.sleep(0.1)
        before = [json.loads(line) for line in open(log + ".1")]
    assert [r["via"] for r in before] == ["net.tcp://h/A/before"]
    assert [r["via"] for r in after] == ["net.tcp://h/A/after"]
    a.close()


def test_off_by_default_and_errors_name_the_file():
    a = service("A")
    with Daemon([("a", "net.tcp://+/A", a.addr)]) as d:
        s = d.connect()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        s.close()
        assert not [f for f in os.listdir(d.dir) if "access" in f]
    d = Daemon([("a", "net.tcp://+/A", a.addr)],
               extra_global="access_log = /nonexistent/dir/access.log")
    try:
        d.start()
        raise AssertionError("started with an access log it cannot open")
    except AssertionError as e:
        assert "nettcpd exited 1" in str(e), e
    assert "access_log '/nonexistent/dir/access.log': No such file or directory" in d.log()
    a.close()


if __name__ == "__main__":
    run_tests(globals())
