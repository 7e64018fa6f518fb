"""bench/nmf-relay, the floor columns of make bench (relay-copy,
relay-splice, relay-sockmap, relay-uring, relay-uring1): in each mode it
relays request/response and 1 MiB each way to a slow reader, each way
ended by a half-close that must come after all of its bytes, byte-exact;
it says why when a mode cannot run and refuses bad arguments."""

import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, Backend,  # noqa: E402
                          free_port, recv_exact, recv_until_close, run_tests,
                          wait_for)

BUILDDIR = os.path.abspath(os.path.join(os.path.dirname(NETTCPD), ".."))
NMF_RELAY = os.path.join(BUILDDIR, "bench", "nmf-relay")
MIB = 1 << 20
# nmf-relay -m uring's provided buffers (relay_uring.c: 1024 of 64 KiB).
BUFFER_RING = 64 * MIB
ROUNDS = 5
# How long each side leaves the other's bytes unread (not a synchronisation:
# the relay must hold the end back however long the reader waits).
SLOW_READER = 0.3
SMALL_RCVBUF = 8192
# Clients one after another: a relay that ends a direction before its last
# bytes fails on some of them, not on every one.
CLIENTS = 6


def pattern(seed, n):
    """n bytes no two offsets of which are alike in a short window: a
    byte lost, doubled or reordered shows."""
    out = bytearray()
    block = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{block}".encode()).digest()
        block += 1
    return bytes(out[:n])


def relay_handler(c, backend):
    """ROUNDS requests (4-byte length, payload) answered reversed; then the
    client's 1 MiB read to its EOF, its digest recorded, and 1 MiB sent
    back, ended by a half-close."""
    for _ in range(ROUNDS):
        n = int.from_bytes(recv_exact(c, 4), "big")
        c.sendall(recv_exact(c, n)[::-1])
    # A slow reader: the relay holds bytes it must deliver before the end.
    time.sleep(SLOW_READER)
    got, how = recv_until_close(c)
    with backend.lock:
        backend.received.append((hashlib.sha256(got).hexdigest(), len(got), how))
    c.sendall(pattern("down", MIB))
    c.shutdown(socket.SHUT_WR)
    # The relay closes once both ends are through: EOF here, not a reset.
    assert c.recv(1) == b""


def can_run(mode):
    """(True, '') or (False, why) from nmf-relay -t."""
    p = subprocess.run([NMF_RELAY, "-t", "-m", mode], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=30 * SLOW)
    return p.returncode == 0, p.stdout.strip()


class Relay:
    def __init__(self, mode, backend_port):
        self.port = free_port()
        self.proc = subprocess.Popen([NMF_RELAY, "-m", mode, "-l", str(self.port),
                                      "-b", str(backend_port)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        assert line == f"listening 127.0.0.1:{self.port}\n", \
            (line, self.proc.stderr.read() if self.proc.poll() is not None else "")

    def stop(self):
        assert self.proc.poll() is None, self.proc.stderr.read()
        self.proc.terminate()
        self.proc.wait(10 * SLOW)
        self.proc.stdout.close()
        self.proc.stderr.close()


def runs_here(mode):
    """Whether mode can run here; if not, a notice in the test log (and
    the test names what it did not run)."""
    ok, why = can_run(mode)
    if not ok:
        print(f"NOTICE: nmf-relay -m {mode} not run here: {why}")
        # Only the optional modes, and only where the relay says why (a
        # mode it does not know is a usage error, and fails here).
        assert mode in ("sockmap", "uring", "uring1") and "usage" not in why, why
    return ok


def relays(mode):
    if not runs_here(mode):
        return
    backend = Backend(relay_handler)
    # Small receive buffers on both ends: the relay holds most of the 1 MiB
    # when the half-close comes (sockmap: in the kernel's queue).
    backend.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    relay = Relay(mode, backend.port)
    try:
        clients = []
        for _ in range(CLIENTS):
            c = socket.socket()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
            c.settimeout(30 * SLOW)
            c.connect(("127.0.0.1", relay.port))
            clients.append(c)
        for i, c in enumerate(clients):
            for r in range(ROUNDS):
                req = pattern(f"req{i}.{r}", 1 + 997 * r)
                c.sendall(len(req).to_bytes(4, "big") + req)
                assert recv_exact(c, len(req)) == req[::-1], (mode, i, r)
        # One way, then the other: each direction ends with a half-close
        # that must come after all of its bytes.
        up = pattern("up", MIB)
        for c in clients:
            c.sendall(up)
            c.shutdown(socket.SHUT_WR)
            time.sleep(SLOW_READER)
            got, how = recv_until_close(c)
            assert how == "eof" and len(got) == MIB, (mode, how, len(got))
            assert got == pattern("down", MIB), mode
            c.close()
        wait_for(lambda: len(backend.received) == len(clients), 10 * SLOW,
                 "the backend's reads to EOF")
        want = (hashlib.sha256(up).hexdigest(), MIB, "eof")
        assert backend.received == [want] * len(clients), (mode, backend.received)
        # Both directions ended: the relay let both sockets go (no backend
        # connection left open by it).
        assert backend.accepted == len(clients)
    finally:
        relay.stop()
        backend.close()


def test_copy_relays_both_ways_byte_exact():
    relays("copy")


def test_splice_relays_both_ways_byte_exact():
    relays("splice")


def test_sockmap_relays_both_ways_byte_exact():
    relays("sockmap")


def test_uring_relays_both_ways_byte_exact():
    relays("uring")


def test_uring1_relays_both_ways_byte_exact():
    relays("uring1")


class Flood:
    """data sent on c from a thread, as fast as the relay takes it; the
    end by a half-close, or the sends' error (the relay closed c)."""

    def __init__(self, c, data):
        self.c, self.data, self.sent = c, data, 0
        self.thread = threading.Thread(target=self._send)
        self.thread.start()

    def _send(self):
        view = memoryview(self.data)
        try:
            while self.sent < len(self.data):
                self.sent += self.c.send(view[self.sent:self.sent + MIB])
            self.c.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def wait_stalled(self):
        """Past what the kernel's buffers on the way can hold, the rest is
        in the relay's; then the sends stop: the relay stopped reading."""
        wait_for(lambda: self.sent > BUFFER_RING // 2, 60 * SLOW, "the first half")
        last = [-1]

        def stalled():
            # No progress over half a second (a pause of a loaded machine
            # only ends the wait early: the test then proves less).
            was, last[0] = last[0], self.sent
            time.sleep(0.5)
            return self.sent == was and self.sent < len(self.data)
        wait_for(stalled, 60 * SLOW, "the relay to stop reading")

    def join(self):
        self.thread.join(60 * SLOW)
        assert not self.thread.is_alive()


def relays_past_its_buffers(mode):
    """The uring modes' provided buffers (64 MiB, shared by every socket) run
    out while a sink reads nothing: the relay stops reading, from that
    connection and from another one that sends meanwhile (ENOBUFS); once
    the sink reads, every byte of both arrives, byte-exact."""
    if not runs_here(mode):
        return
    data = os.urandom(BUFFER_RING + 64 * MIB)
    release = threading.Event()
    seen = []

    def sink(c, backend):
        release.wait(60 * SLOW)
        got, how = recv_until_close(c, limit=len(data) + 1)
        seen.append((len(got), hashlib.sha256(got).hexdigest(), how))
        c.close()

    backend = Backend(sink)
    backend.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    relay = Relay(mode, backend.port)
    try:
        # The other connection first: its recv is armed before the
        # buffers run out, and meets their end.
        other = socket.create_connection(("127.0.0.1", relay.port), timeout=30 * SLOW)
        wait_for(lambda: backend.accepted == 1, 30 * SLOW, "the other connection")
        c = socket.create_connection(("127.0.0.1", relay.port), timeout=60 * SLOW)
        flood = Flood(c, data)
        flood.wait_stalled()
        other.sendall(b"again")
        other.shutdown(socket.SHUT_WR)
        release.set()
        flood.join()
        assert flood.sent == len(data)
        wait_for(lambda: len(seen) == 2, 60 * SLOW, "the sinks' reads to EOF")
        assert sorted(seen) == [(5, hashlib.sha256(b"again").hexdigest(), "eof"),
                                (len(data), hashlib.sha256(data).hexdigest(), "eof")], \
            [x[0] for x in seen]
        c.close()
        other.close()
    finally:
        release.set()
        relay.stop()
        backend.close()


def test_uring_relays_past_its_buffers():
    relays_past_its_buffers("uring")


def test_uring1_relays_past_its_buffers():
    relays_past_its_buffers("uring1")


def test_uring_failed_connection_gives_its_buffers_back():
    """A connection holding every provided buffer (its sink reads nothing),
    its other direction starved of them, fails (the sink resets): its
    buffers go back, and the next connection is relayed."""
    if not runs_here("uring"):
        return
    reset = threading.Event()
    seen = []

    def sink(c, backend):
        if backend.accepted == 1:
            reset.wait(60 * SLOW)
            # Its answer meets the relay without a buffer (ENOBUFS); then
            # the reset.  (The pause only orders the two: without it the
            # test proves less, it does not fail.)
            c.sendall(b"x")
            time.sleep(0.2)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            seen.append(recv_until_close(c))
        c.close()

    backend = Backend(sink)
    backend.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    relay = Relay("uring", backend.port)
    try:
        c = socket.create_connection(("127.0.0.1", relay.port), timeout=60 * SLOW)
        flood = Flood(c, os.urandom(BUFFER_RING + 64 * MIB))
        flood.wait_stalled()
        reset.set()
        flood.join()
        assert flood.sent < len(flood.data)
        c.close()
        with socket.create_connection(("127.0.0.1", relay.port), timeout=30 * SLOW) as c2:
            c2.sendall(b"again")
            c2.shutdown(socket.SHUT_WR)
            wait_for(lambda: seen, 30 * SLOW, "the next connection's bytes")
        assert seen == [(b"again", "eof")], seen
    finally:
        reset.set()
        relay.stop()
        backend.close()


def test_bad_arguments_are_refused():
    for argv in (["-m", "bogus", "-l", "1", "-b", "2"], ["-l", "0", "-b", "2"],
                 ["-l", "1"], ["-l", "1", "-b", "70000"], ["-l", "1", "-b", "2", "extra"]):
        p = subprocess.run([NMF_RELAY] + argv, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=10 * SLOW)
        assert p.returncode == 2 and "usage: nmf-relay" in p.stderr, (argv, p.stderr)


def test_a_port_in_use_is_named():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        p = subprocess.run([NMF_RELAY, "-l", str(port), "-b", "1"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=10 * SLOW)
    assert p.returncode == 1 and f"listen on 127.0.0.1:{port}" in p.stderr, p.stderr


if __name__ == "__main__":
    run_tests(globals())
