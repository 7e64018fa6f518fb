"""Forwarding after the replay: bulk data both ways, half-close, resets,
in splice mode and in copy mode."""

import hashlib
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (Backend, Daemon, FORWARD_METHODS, preamble, read_preamble,  # noqa: E402
                          recv_exact, recv_until_close, reset, run_tests, wait_for)

BULK = 24 * 1024 * 1024

# These tests send raw bytes after the preamble, which no session holds:
# they test the pipe that follow_sessions = off makes of every connection
# (the followed pump has its own tests in test_sessions.py).
PIPE = "follow_sessions = off"


def pattern(seed, n):
    """n pseudo-random bytes, reproducible from seed."""
    out = bytearray()
    block = hashlib.sha256(seed).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:n])


def bulk_backend(c, backend):
    """Receive BULK bytes and reply with their digest, while sending BULK
    bytes of its own at the same time; then half-close."""
    read_preamble(c)
    c.sendall(b"\x0b")
    down = pattern(b"down", BULK)
    sender = threading.Thread(target=c.sendall, args=(down,))
    sender.start()
    digest = hashlib.sha256()
    got = 0
    while True:
        chunk = c.recv(1 << 16)
        if not chunk:
            break
        digest.update(chunk)
        got += len(chunk)
    sender.join()
    c.sendall(digest.digest() + got.to_bytes(8, "big"))
    c.shutdown(socket.SHUT_WR)


def test_bulk_both_ways_with_checksum():
    for forward in FORWARD_METHODS:
        b = Backend(bulk_backend)
        with Daemon(extra_global=PIPE, routes=[("bulk", "net.tcp://+/Bulk", b.addr)], forward=forward) as d:
            base = d.sockets()
            s = d.connect(timeout=60)
            s.sendall(preamble("net.tcp://h/Bulk"))
            assert recv_exact(s, 1) == b"\x0b"
            up = pattern(b"up", BULK)
            result = {}

            def reader():
                result["data"], result["how"] = recv_until_close(s, limit=BULK + 64)

            t = threading.Thread(target=reader)
            t.start()
            s.sendall(up)
            s.shutdown(socket.SHUT_WR)      # half-close: the reply must still arrive
            t.join(60)
            s.close()
            data = result["data"]
            assert result["how"] == "eof", result["how"]
            assert len(data) == BULK + 40, (forward, len(data))
            assert hashlib.sha256(data[:BULK]).digest() == hashlib.sha256(
                pattern(b"down", BULK)).digest(), forward
            assert data[BULK:BULK + 32] == hashlib.sha256(up).digest(), forward
            assert int.from_bytes(data[BULK + 32:], "big") == BULK
            d.assert_no_leak(base)
        b.close()


def test_half_close_from_client_then_reply():
    """The client sends its request and FIN; the backend sees EOF only after
    every byte, then answers; the client reads the whole answer."""
    def backend(c, be):
        read_preamble(c)
        c.sendall(b"\x0b")
        got = recv_until_close(c)[0]
        time.sleep(0.2)     # answer well after the FIN
        c.sendall(b"reply:" + hashlib.sha256(got).hexdigest().encode())
        c.shutdown(socket.SHUT_WR)

    for forward in FORWARD_METHODS:
        b = Backend(backend)
        with Daemon(extra_global=PIPE, routes=[("r", "net.tcp://+/", b.addr)], forward=forward) as d:
            s = d.connect()
            s.sendall(preamble("net.tcp://h/x"))
            assert recv_exact(s, 1) == b"\x0b"
            body = os.urandom(300000)
            s.sendall(body)
            s.shutdown(socket.SHUT_WR)
            got, how = recv_until_close(s)
            s.close()
            assert how == "eof"
            assert got == b"reply:" + hashlib.sha256(body).hexdigest().encode()
            d.wait_log("closed, %d bytes up" % (len(preamble("net.tcp://h/x")) + len(body)))
        b.close()


def test_half_close_from_backend_then_client_sends():
    """The backend answers and sends FIN first; the client still sends, the
    backend still receives, then the client closes."""
    received = {}

    def backend(c, be):
        read_preamble(c)
        c.sendall(b"\x0bbye")
        c.shutdown(socket.SHUT_WR)
        got = recv_until_close(c)[0]
        received["late"] = bytes(got)

    for forward in FORWARD_METHODS:
        received.clear()
        b = Backend(backend)
        with Daemon(extra_global=PIPE, routes=[("r", "net.tcp://+/", b.addr)], forward=forward) as d:
            s = d.connect()
            s.sendall(preamble("net.tcp://h/x"))
            got, how = recv_until_close(s)
            assert got == b"\x0bbye" and how == "eof"
            s.sendall(b"late bytes after the server's FIN")
            s.shutdown(socket.SHUT_WR)
            wait_for(lambda: "late" in received, what="backend saw EOF")
            assert received["late"] == b"late bytes after the server's FIN"
            s.close()
        b.close()


def test_client_reset_mid_stream_tears_down_both():
    events = {}

    def backend(c, be):
        read_preamble(c)
        c.sendall(b"\x0b")
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    events["backend"] = "eof"
                    return
        except ConnectionResetError:
            events["backend"] = "reset"

    for forward in FORWARD_METHODS:
        events.clear()
        b = Backend(backend)
        with Daemon(extra_global=PIPE, routes=[("r", "net.tcp://+/", b.addr)], forward=forward) as d:
            base = d.sockets()
            s = d.connect()
            s.sendall(preamble("net.tcp://h/x"))
            assert recv_exact(s, 1) == b"\x0b"
            s.sendall(os.urandom(100000))
            reset(s)
            wait_for(lambda: "backend" in events, what="backend noticed")
            assert events["backend"] == "reset", events
            d.assert_no_leak(base)
            d.wait_log("aborted (Connection reset by peer)")
        b.close()


def test_backend_reset_mid_stream_reaches_client():
    def backend(c, be):
        read_preamble(c)
        c.sendall(b"\x0b" + b"x" * 5000)
        time.sleep(0.1)
        reset(c)

    for forward in FORWARD_METHODS:
        b = Backend(backend)
        with Daemon(extra_global=PIPE, routes=[("r", "net.tcp://+/", b.addr)], forward=forward) as d:
            base = d.sockets()
            s = d.connect()
            s.sendall(preamble("net.tcp://h/x"))
            got, how = recv_until_close(s)
            s.close()
            assert got[:1] in (b"", b"\x0b")
            assert how == "reset", how
            d.assert_no_leak(base)
        b.close()


def pooled_pipe_sizes(d):
    """F_GETPIPE_SZ of every pipe the daemon holds, through /proc."""
    import fcntl
    sizes = []
    base = f"/proc/{d.pid}/fd"
    for name in os.listdir(base):
        # 0-2 are inherited: under CI standard input can be a pipe
        if int(name) > 2 and os.readlink(os.path.join(base, name)).startswith("pipe:"):
            fd = os.open(os.path.join(base, name), os.O_RDONLY | os.O_NONBLOCK)
            try:
                sizes.append(fcntl.fcntl(fd, 1032))    # F_GETPIPE_SZ
            finally:
                os.close(fd)
    return sizes


def test_pipe_size():
    """Pipes get pipe_size (1 MiB by default); 0 keeps the kernel's 64 KiB."""
    for setting, want in (("", 1 << 20), ("pipe_size = 0", 65536),
                          ("pipe_size = 256k", 256 << 10)):
        b = Backend(bulk_backend)
        with Daemon([("bulk", "net.tcp://+/", b.addr)], forward="splice",
                    extra_global="follow_sessions = off\n" + setting + "\nworkers = 1") as d:
            base = d.sockets()
            s = d.connect(timeout=60)
            s.sendall(preamble("net.tcp://h/x"))
            assert recv_exact(s, 1) == b"\x0b"
            t = threading.Thread(target=recv_until_close, args=(s, BULK + 64))
            t.start()
            s.sendall(pattern(b"up", BULK))
            s.shutdown(socket.SHUT_WR)
            t.join(60)
            s.close()
            # once the connection is gone only pooled pipes remain, none
            # caught between pipe2() and F_SETPIPE_SZ
            d.assert_no_leak(base)
            sizes = pooled_pipe_sizes(d)
            assert sizes and set(sizes) == {want}, (setting, sizes)
        b.close()


def test_idle_timeout_closes_only_silent_connections():
    b = Backend(name="B")
    with Daemon([("r", "net.tcp://+/", b.addr)], extra_global=PIPE + "\nidle_timeout = 500ms") as d:
        base = d.sockets()
        s = d.connect()
        s.sendall(preamble("net.tcp://h/x"))
        assert recv_exact(s, 2) == b"\x0bB"
        # traffic every 200 ms keeps it open well past the timeout
        for i in range(8):
            s.sendall(b"ping%d" % i)
            assert recv_exact(s, 5) == b"ping%d" % i
            last_activity = time.time()
            time.sleep(0.2)
        got, how = recv_until_close(s)
        s.close()
        assert got == b"" and how == "eof"
        assert 0.45 < time.time() - last_activity < 1.5, time.time() - last_activity
        d.wait_log("idle_timeout expired after")
        d.assert_no_leak(base)
    b.close()


if __name__ == "__main__":
    run_tests(globals())
