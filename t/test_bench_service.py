"""bench/nmf-service's handoff mode (--control PATH --via PREFIX), the
service make bench's handoff scenario measures: it registers its prefix
with the real daemon, gets each matching client's socket with the preamble
bytes nettcpd read, answers that preamble (the Ack it never read itself),
serves request/response and the next session on the kept connection, and
its registration ends with it."""

import os
import signal
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, Daemon, fault_record,  # noqa: E402
                          preamble, recv_exact, run_tests, sized_envelope,
                          wait_for)

BUILDDIR = os.path.abspath(os.path.join(os.path.dirname(NETTCPD), ".."))
NMF_SERVICE = os.path.join(BUILDDIR, "bench", "nmf-service")
PREFIX = "net.tcp://+/handoff"
VIA = "net.tcp://bench.local/handoff/svc0"


def control_daemon(routes=()):
    """A daemon with a control socket (its path in d.control)."""
    path = os.path.join(tempfile.mkdtemp(prefix="nettcpd-bench-test-"), "control.sock")
    d = Daemon(routes, extra_global=f"control = {path}\n")
    d.control = path
    return d


def start_service(d):
    """nmf-service registered for handoff only (no -l): every client it
    serves came from nettcpd.  Returns the process once it says ready."""
    svc = subprocess.Popen([NMF_SERVICE, "--control", d.control, "--via", PREFIX, "-t", "120"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = svc.stdout.readline()
    assert first.startswith(f"registered {PREFIX} for handoff: registration "), \
        (first, svc.stderr.read() if svc.poll() is not None else "")
    assert svc.stdout.readline() == "ready\n"
    return svc


def stop_service(svc):
    """SIGTERM; its exit line (stderr)."""
    svc.send_signal(signal.SIGTERM)
    _, err = svc.communicate(timeout=10 * SLOW)
    assert svc.returncode == 0, err
    return err


def request(n):
    """The bench's REPLY operation: answer with one envelope of n bytes."""
    return sized_envelope(b"R" + struct.pack("<I", n) + b"x" * 3)


def read_reply(c, n):
    """One sized envelope of n payload bytes: 06, its mbint, the payload."""
    assert recv_exact(c, 1) == b"\x06"
    size, shift = 0, 0
    while True:
        b = recv_exact(c, 1)[0]
        size |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    assert size == n, size
    return recv_exact(c, size)


def test_handed_off_client_is_served_by_the_bench_service():
    with control_daemon() as d:
        svc = start_service(d)
        try:
            with d.connect(timeout=10 * SLOW) as c:
                # The request rides in the same write as the preamble:
                # whatever nettcpd read of it comes in the handoff, the
                # rest on the socket, and the service must serve both.
                c.sendall(preamble(VIA) + request(300))
                assert recv_exact(c, 1) == b"\x0b"
                assert len(read_reply(c, 300)) == 300
                c.sendall(request(5))
                assert len(read_reply(c, 5)) == 5
                c.sendall(b"\x07")
                assert recv_exact(c, 1) == b"\x07"
                # The next session on the kept connection: nettcpd holds
                # nothing for it any more, the service answers it.
                c.sendall(preamble(VIA))
                assert recv_exact(c, 1) == b"\x0b"
                c.sendall(request(64))
                assert len(read_reply(c, 64)) == 64
                c.sendall(b"\x07")
                assert recv_exact(c, 1) == b"\x07"
        finally:
            err = stop_service(svc)
        assert "1 connections served (0 accepted, 1 handed off)" in err, err
        assert "2 sessions (1 on a kept connection), 0 bad" in err, err
        # Its registration ended with it: the prefix routes nowhere now,
        # once nettcpd has seen the control connection close and every
        # worker has the routes without it (until then a client is handed
        # off to no one: EndpointUnavailable).
        d.wait_log("unregistered " + PREFIX)

        def fault():
            with d.connect(timeout=10 * SLOW) as c:
                c.sendall(preamble(VIA))
                return recv_exact(c, len(fault_record("EndpointNotFound")))
        wait_for(lambda: fault() == fault_record("EndpointNotFound"),
                 what="EndpointNotFound for the prefix")


def test_many_handed_off_clients_each_acked_once():
    with control_daemon() as d:
        svc = start_service(d)
        try:
            for i in range(50):
                with d.connect(timeout=10 * SLOW) as c:
                    c.sendall(preamble(f"net.tcp://bench.local/handoff/svc{i}"))
                    assert recv_exact(c, 1) == b"\x0b"
                    c.sendall(request(256) + b"\x07")
                    assert len(read_reply(c, 256)) == 256
                    assert recv_exact(c, 1) == b"\x07"
        finally:
            err = stop_service(svc)
        assert "50 connections served (0 accepted, 50 handed off)" in err, err
        assert "50 sessions (0 on a kept connection), 0 bad" in err, err


def test_clients_gone_at_once_leave_the_service_serving():
    # Clients that close right after their preamble: the service may close
    # its socket before nettcpd has closed its own copy (it does on TAKEN),
    # and epoll keeps reporting a socket whose open file lives on in
    # another process; the service must not act on its freed connection.
    with control_daemon() as d:
        svc = start_service(d)
        try:
            for round_ in range(10):
                held = []
                for i in range(40):
                    c = d.connect(timeout=10 * SLOW)
                    c.sendall(preamble(f"net.tcp://bench.local/handoff/svc{i}"))
                    held.append(c)
                for c in held:
                    c.close()
                with d.connect(timeout=10 * SLOW) as c:
                    c.sendall(preamble(VIA))
                    assert recv_exact(c, 1) == b"\x0b", round_
                    c.sendall(request(32) + b"\x07")
                    assert len(read_reply(c, 32)) == 32
                    assert recv_exact(c, 1) == b"\x07"
            assert svc.poll() is None, svc.stderr.read()
        finally:
            err = stop_service(svc)
        assert "0 bad" in err, err


def test_refused_registration_exits_non_zero():
    # A static route holds the prefix: nettcpd answers ERR conflict and the
    # service says so and exits 1 at once, serving nothing.
    d = control_daemon(routes=[("held", PREFIX, "127.0.0.1:9")])
    with d:
        r = subprocess.run([NMF_SERVICE, "--control", d.control, "--via", PREFIX],
                           capture_output=True, text=True, timeout=30 * SLOW)
        assert r.returncode == 1, r
        assert f"register {PREFIX}:" in r.stderr and "ready" not in r.stdout, r


if __name__ == "__main__":
    run_tests(globals())
