"""Shutdown at session boundaries: the first SIGTERM (or SIGINT) stops
accepting, closes client connections idle between sessions (a WCF client
dials again), lets sessions in progress run to their End, then exits 0;
shutdown_timeout bounds the wait; a second signal exits at once."""

import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, Daemon, preamble, recv_until_close, run_tests,  # noqa: E402
                          sized_envelope, wait_for)
from test_sessions import Reader, service, session  # noqa: E402


def daemon(a, extra=""):
    return Daemon([("a", "net.tcp://+/A", a.addr)], extra_global="workers = 2\n" + extra)


def wait_exit(d, timeout):
    try:
        return d.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"nettcpd still running after {timeout} s:\n{d.log()}")


def test_session_in_progress_ends_idle_connection_closed_exit_zero():
    """A session in progress when SIGTERM comes goes on to its End and is
    then closed; a client connection idle between sessions is closed at
    once; new connections are refused; nettcpd exits 0 as soon as the
    session is over, long before shutdown_timeout."""
    a = service("A")
    d = daemon(a, "shutdown_timeout = 30s").start()
    try:
        busy = d.connect()
        rb = Reader(busy)
        busy.sendall(preamble("net.tcp://h/A"))
        assert rb.record()[0] == 0x0B
        idle = d.connect()
        assert session(idle, "net.tcp://h/A") == [b"A:hello"]
        d.proc.send_signal(signal.SIGTERM)
        d.wait_log("draining")
        # the idle one: closed, nothing more
        assert recv_until_close(idle) == (b"", "eof")
        idle.close()
        # no new client is taken
        wait_for(lambda: refused(d.port), what="the listener to close")
        # the busy one goes on, to its End
        time.sleep(0.3)
        busy.sendall(sized_envelope(b"during the drain"))
        assert rb.record() == (0x06, b"A:during the drain")
        started = time.time()
        busy.sendall(b"\x07")
        assert rb.record()[0] == 0x07
        assert recv_until_close(busy) == (b"", "eof")   # then closed
        busy.close()
        assert wait_exit(d, 5 * SLOW) == 0
        assert time.time() - started < 2 * SLOW
        log = d.log()
        assert "every session has ended" in log, log
        assert "closed between sessions by the shutdown" in log
        assert "session over, closed by the shutdown" in log
    finally:
        d.stop()
    a.close()


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


def test_shutdown_timeout_closes_what_is_left():
    """A session that does not end is closed at shutdown_timeout, and
    nettcpd exits 0."""
    a = service("A")
    d = daemon(a, "shutdown_timeout = 1s").start()
    try:
        busy = d.connect()
        rb = Reader(busy)
        busy.sendall(preamble("net.tcp://h/A"))
        assert rb.record()[0] == 0x0B
        started = time.time()
        d.proc.send_signal(signal.SIGTERM)
        assert wait_exit(d, 5 * SLOW) == 0
        assert 0.9 < time.time() - started < 3 * SLOW
        assert recv_until_close(busy)[1] in ("eof", "reset")
        busy.close()
        assert "shutdown_timeout expired" in d.log()
    finally:
        d.stop()
    a.close()


def test_second_signal_exits_at_once():
    a = service("A")
    d = daemon(a, "shutdown_timeout = 60s").start()
    try:
        busy = d.connect()
        busy.sendall(preamble("net.tcp://h/A"))
        assert Reader(busy).record()[0] == 0x0B
        d.proc.send_signal(signal.SIGTERM)
        d.wait_log("draining")
        started = time.time()
        d.proc.send_signal(signal.SIGINT)
        assert wait_exit(d, 5 * SLOW) == 0
        assert time.time() - started < 1 * SLOW
        busy.close()
    finally:
        d.stop()
    a.close()


def test_no_connection_at_all_exits_at_once():
    a = service("A")
    d = daemon(a).start()
    started = time.time()
    d.proc.send_signal(signal.SIGTERM)
    assert wait_exit(d, 5 * SLOW) == 0
    assert time.time() - started < 1 * SLOW
    a.close()


if __name__ == "__main__":
    run_tests(globals())
