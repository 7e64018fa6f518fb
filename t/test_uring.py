#!/usr/bin/env python3
"""forward = uring (src/uring.c): what only the io_uring path has.  The
whole suite also runs with it (NETTCPD_FORWARD=uring, .ci/run); these
tests drive what that cannot: a kernel that refuses io_uring, more
receives finishing at once than the ring has buffers, sends under way
when a connection ends, a reload that changes the method under live
sessions, and a stream nettcpd does not follow, which is spliced."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nettcpd_test  # noqa: E402
from nettcpd_test import (SLOW, Backend, Daemon, preamble, read_preamble,  # noqa: E402
                          recv_exact, recv_until_close, reset, run_tests,
                          sized_envelope, wait_for)
from test_ready_order import stopped  # noqa: E402
from test_reload import reload  # noqa: E402
from test_sessions import Reader, service, session  # noqa: E402
from test_syscalls import Strace, uring_runs  # noqa: E402

# src/uring.c: URING_BUFS
RING_BUFFERS = 256

# A seccomp filter, as a systemd unit's SystemCallFilter without the
# io_uring calls sets one: io_uring_setup (425 on every architecture since
# the numbers were unified) fails with EPERM; then the daemon runs.
SECCOMP_EXEC = r"""
import ctypes, os, struct, sys
f = [(0x20, 0, 0, 0), (0x15, 0, 1, 425), (0x06, 0, 0, 0x00050001), (0x06, 0, 0, 0x7fff0000)]
code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in f))
prog = struct.pack("HxxxxxxP", len(f), ctypes.addressof(code))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0                     # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.c_char_p(prog), 0, 0) == 0  # PR_SET_SECCOMP, filter
os.execv(sys.argv[1], sys.argv[1:])
"""


def daemon(routes, extra=""):
    return Daemon(routes, forward="uring",
                  extra_global="workers = 1\nbackend_pool_settle = 0\n" + extra)


def test_refused_by_seccomp_falls_back_to_splice():
    """Where a seccomp filter refuses io_uring (the shipped unit does), the
    worker says so once, with what to do, and forwards by splice."""
    if nettcpd_test.WRAPPER:
        print("SKIP: test_refused_by_seccomp: the filter would bind the "
              "wrapper (such as valgrind) too")
        return
    a = service("A")
    wrapper = nettcpd_test.WRAPPER
    nettcpd_test.WRAPPER = [sys.executable, "-c", SECCOMP_EXEC]
    try:
        with daemon([("a", "net.tcp://+/A", a.addr)]) as d:
            d.wait_log("this worker forwards by splice")
            log = d.log()
            assert "no io_uring here (io_uring_setup: Operation not permitted)" in log, log
            assert "seccomp" in log and "nettcpd.ini(5)" in log, log
            for i in range(3):
                s = d.connect()
                assert session(s, "net.tcp://h/A", [b"%d" % i, b"x" * 40000]) == \
                    [b"A:%d" % i, b"A:" + b"x" * 40000]
                s.close()
            assert log.count("no io_uring here") == 1
    finally:
        nettcpd_test.WRAPPER = wrapper
    a.close()


def test_more_receives_at_once_than_the_ring_has_buffers():
    """More clients' requests than the ring has buffers arrive while the
    daemon is stopped, so their receives all finish when it goes on: those
    the ring has no buffer for read their socket themselves, and every
    client gets its own reply."""
    n = RING_BUFFERS + 64
    nettcpd_test.raise_fd_limit(4 * n + 256)
    a = service("A")
    with daemon([("a", "net.tcp://+/A", a.addr)]) as d:
        if not uring_runs(d):
            a.close()
            return
        clients = []
        for i in range(n):
            s = d.connect(timeout=30)
            s.sendall(preamble("net.tcp://h/A"))
            clients.append((s, Reader(s)))
        for s, r in clients:
            assert r.record()[0] == 0x0B
        with stopped(d):
            for i, (s, r) in enumerate(clients):
                s.sendall(sized_envelope(b"request %d" % i))
        for i, (s, r) in enumerate(clients):
            assert r.record() == (0x06, b"A:request %d" % i), i
        for s, r in clients:
            s.close()
    a.close()


def flooding_service(c, backend):
    """Ack, then send envelopes until the connection fails: the client
    never reads, so the daemon's send towards it stays under way.  Small
    ones: a large envelope starts a read-ahead (test_uring_stream.py)."""
    read_preamble(c)
    c.sendall(b"\x0b")
    chunk = sized_envelope(b"f" * 1000) * 16
    try:
        while True:
            c.sendall(chunk)
    except OSError:
        with backend.lock:
            backend.closed += 1


def stuck_session(d):
    """A client that reads its Ack, then nothing: the service's flood fills
    both sockets and the daemon's send to the client waits."""
    s = d.connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(preamble("net.tcp://h/F"))
    assert recv_exact(s, 1) == b"\x0b"
    return s


def test_send_under_way_when_the_client_resets():
    """The client resets while the daemon's send to it is under way: the
    send fails with it, the connection is torn down with the service's,
    and nothing is left open (ASan would see a use of the freed buffer)."""
    f = Backend(flooding_service, name="F")
    f.closed = 0
    with daemon([("f", "net.tcp://+/F", f.addr)]) as d:
        if not uring_runs(d):
            f.close()
            return
        base = d.sockets()
        for _ in range(3):
            s = stuck_session(d)
            threading.Event().wait(0.3 * SLOW)
            reset(s)
        wait_for(lambda: f.closed == 3, 10, "the service's connections closed")
        d.assert_no_leak(base)
    f.close()


def test_idle_timeout_and_shutdown_with_sends_under_way():
    """idle_timeout ends a session whose send has waited too long (the
    send is cancelled before its buffer is freed), and a shutdown ends
    such sessions at once (the ring's teardown cancels them)."""
    f = Backend(flooding_service, name="F")
    f.closed = 0
    with daemon([("f", "net.tcp://+/F", f.addr)], extra="idle_timeout = 1s") as d:
        if not uring_runs(d):
            f.close()
            return
        base = d.sockets()
        s = stuck_session(d)
        d.wait_log("idle_timeout expired", timeout=5)
        wait_for(lambda: f.closed == 1, 10, "the service's connection closed")
        d.assert_no_leak(base)
        s.close()
        stuck = [stuck_session(d) for _ in range(2)]
        threading.Event().wait(0.3 * SLOW)
        assert d.stop(drain=0.5) == 0, d.log()
        for s in stuck:
            s.close()
    f.close()


def test_reload_changes_the_method_under_live_sessions():
    """A session under way keeps the method it began with across a reload
    that changes forward (uring to splice and back); each new session
    takes the new one, and every byte arrives."""
    a = service("A")
    d = daemon([("a", "net.tcp://+/A", a.addr)])
    with d:
        if not uring_runs(d):
            a.close()
            return
        live = d.connect()
        r = Reader(live)
        live.sendall(preamble("net.tcp://h/A"))
        assert r.record()[0] == 0x0B
        for method in ("splice", "uring", "copy", "uring"):
            with open(d.config) as f:
                text = f.read()
            with open(d.config, "w") as f:
                f.write("\n".join(ln for ln in text.split("\n")
                                  if not ln.startswith("forward")).replace(
                    "[global]", f"[global]\nforward = {method}", 1))
            reload(d)
            big = bytes(range(256)) * 300
            live.sendall(sized_envelope(b"live " + method.encode()) + sized_envelope(big))
            assert r.record() == (0x06, b"A:live " + method.encode())
            assert r.record() == (0x06, b"A:" + big)
            s = d.connect()
            assert session(s, "net.tcp://h/A", [method.encode(), big]) == \
                [b"A:" + method.encode(), b"A:" + big]
            s.close()
        live.sendall(b"\x07")
        assert r.record()[0] == 0x07
        live.close()
    a.close()


def test_stream_it_does_not_follow_is_spliced():
    """With follow_sessions = off nettcpd does not follow the stream: what
    the ring receives goes out through the ring, and the rest of the
    stream is spliced, as a large envelope is (copied through the ring
    16 KiB at a time it ran at a third to a half of splice's rate,
    README); every byte arrives, in order, both ways."""
    a = service("A")
    with daemon([("a", "net.tcp://+/A", a.addr)], "follow_sessions = off\n") as d:
        if not uring_runs(d):
            a.close()
            return
        s = d.connect()
        big = os.urandom(4 << 20)
        tracer = Strace(d, "splice,io_uring_enter")
        try:
            assert session(s, "net.tcp://h/A", [b"small", big, b"again"]) == \
                [b"A:small", b"A:" + big, b"A:again"]
        finally:
            counts = tracer.stop()
        s.close()
    a.close()
    print(f"  4 MiB each way: {counts}")
    assert counts.get("io_uring_enter", (0, 0))[0] > 0, counts
    assert counts.get("splice", (0, 0))[0] > 0, counts


def test_stream_it_does_not_follow_to_a_slow_reader():
    """The spliced stream meets a client that reads nothing for a while
    and then reads slowly: the pipe fills and waits for the client's
    socket; every byte the service sent arrives, in order, before its end
    of stream, and nothing is left open."""
    data = os.urandom(8 << 20)

    def flood(c, backend):
        read_preamble(c)
        c.sendall(b"\x0b" + data)
        c.shutdown(socket.SHUT_WR)
        while c.recv(65536):
            pass
        c.close()

    b = Backend(flood)
    with daemon([("a", "net.tcp://+/A", b.addr)], "follow_sessions = off\n") as d:
        if not uring_runs(d):
            b.close()
            return
        base = d.sockets()
        s = d.connect(timeout=60 * SLOW)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        s.sendall(preamble("net.tcp://h/A"))
        assert recv_exact(s, 1) == b"\x0b"
        time.sleep(0.5)
        got = bytearray()
        while len(got) < (1 << 20):
            chunk = s.recv(4096)
            assert chunk, len(got)
            got += chunk
        rest, how = recv_until_close(s, limit=len(data) + 1)
        got += rest
        assert how == "eof" and bytes(got) == data, (how, len(got))
        s.close()
        d.assert_no_leak(base)
    b.close()


if __name__ == "__main__":
    run_tests(globals())
