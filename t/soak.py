"""Soak test: the real daemon under many clients and injected faults, every
forwarded byte checked end to end.

Three daemons run side by side, with forward = splice, copy and uring
(where io_uring is refused, the third says so and splices), all routing to
three Python backends.  Client threads open connection after connection
against any of them.  A message is a 12-byte
header (length, seed) and 1 B to 1 MiB generated from the seed, so both ends
can check it: the backend checks what reached it and echoes it, the client
checks the echo, both by SHA-256.  About half the connections are each kind:

Unframed: one preamble with a random Via (some match no route and must get
exactly the EndpointNotFound fault record) that ends in an upgrade the
daemon passes through (application/negotiate), then 1 to 6 raw messages.
The daemon cannot read such a stream and relays it as a plain pipe, pinned
to the backend of its Via.  Faults, chosen per connection: the client resets mid-message;
the client half-closes, then reads the rest; the client stops reading for a
while, so backpressure builds through the proxy; the backend resets
mid-message; the backend half-closes early and goes on reading.

Framed: 1 to 4 duplex sessions on the same client connection, each with a
random Via, so each is routed afresh: preamble, the service's Preamble Ack,
1 to 6 messages as Sized Envelopes, each echoed in an envelope, End, the
service's End.  Sometimes the next preamble goes right behind the End.  The
last session may carry a fault: an unknown Via (exactly EndpointNotFound,
then end of stream), the client resets mid-envelope, the client half-closes
after its End without waiting (then reads the service's End and end of
stream), the client stops reading while large envelopes come back, the
backend resets mid-envelope.  The Via of a framed session carries a token
by which the backend finds the session's plan, to check its preamble byte
for byte and inject its faults.

The backends behave like WCF services: each answers a preamble with the
Ack, a session's End with End, and then reads the next preamble on the
same connection, which the daemon keeps in its pool between sessions.  Per
connection a backend reuses it (most), closes it after an End, closes it
with FIN or reset once it has been idle for a random delay (counted from
when the daemon has acknowledged its End: a reset discards unsent bytes),
or drops it (reset) as the next preamble comes; the daemon must drop such
a connection or redial, unnoticed by the client.  Every preamble a backend
receives must be a whole, valid preamble whose Via routes to that backend;
anything else is a mis-route.  Meanwhile a chaos thread restarts
backends (closes the listening socket, reopens the same port); a session
routed during the gap must get exactly the EndpointUnavailable fault record
(or, if the kernel had already queued it on the closed listener, a reset
before the backend's ack).

The daemons run with backend_pool_timeout = POOL_TIMEOUT seconds, so their
pools empty soon after the load stops.  The run is cut into rounds.  After
each, the load drains and the daemons are checked: each holds exactly the
sockets it had at the start (which needs every pooled backend connection
expired), at most 16 pipe descriptors per worker (its pipe pool), the same
other descriptors, and an RSS within RSS_TOLERANCE_KB of the start, and
the ring's buffers for uring (not for an AddressSanitizer build, whose
quarantine keeps up to 256 MB of freed memory: LeakSanitizer checks it
at exit instead).  At the end all must still be alive and exit 0 on
SIGTERM.  Any corrupted byte, mis-routed session, leak, crash, or
connection that takes longer than CONN_BOUND seconds is a failure, and
the exit status is 1.

Environment:
  NETTCPD          the daemon (make soak sets it)
  SOAK_SECONDS     how long to load, 180 by default; hours are fine
  SOAK_SEED        the seed; printed, and by default random
  SOAK_CLIENTS     client threads, 24 by default
  SOAK_LOG_LEVEL   the daemons' log_level, info by default; debug logs each
                   session, pooled connection and redial
"""

import fcntl
import hashlib
import os
import random
import re
import socket
import struct
import sys
import termios
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, Daemon, drop_tempdir, fault_record, mbint,  # noqa: E402
                          own_tempdir, preamble, raise_fd_limit, recv_exact, recv_until_close,
                          reset, sized_envelope, string_record, wait_for)

SECONDS = float(os.environ.get("SOAK_SECONDS") or 180)
SEED = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(1 << 32))
CLIENTS = int(os.environ.get("SOAK_CLIENTS") or 24)
LOG_LEVEL = os.environ.get("SOAK_LOG_LEVEL") or "info"

NBACKENDS = 3
MAX_MESSAGE = 1 << 20
# One daemon each; uring reads sessions ahead from a large envelope on.
FORWARD = ("splice", "copy", "uring")
IO_TIMEOUT = 20.0 * SLOW          # one recv or send that waits longer: a hang
CONN_BOUND = 60.0 * SLOW          # one whole connection that takes longer: a hang
DRAIN_BOUND = 30.0 * SLOW         # after a round, everything must be closed by then
RESTART_SLACK = 0.1               # seconds around a restart gap
# RSS may grow once with the peak load (the allocator keeps freed pages, libev
# grows its fd tables); a leak would grow with every connection instead.
RSS_TOLERANCE_KB = 4 * 1024
# forward = uring: the ring's provided buffers (src/uring.c, uring_int.h:
# 256 of 16 KiB, 128 of 64 KiB a worker) stay resident once touched.
RING_KB = 256 * 16 + 128 * 64
PIPE_FDS_PER_WORKER = 16          # each worker's pipe pool keeps up to 8 pipes


def asan_build(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


# RSS says nothing under ASan: freed memory waits in its quarantine.
RSS_CHECKED = not asan_build(NETTCPD)
POOL_TIMEOUT = 1                  # the daemons' backend_pool_timeout, seconds
# A backend connection idle between sessions longer than this was kept in
# the pool past backend_pool_timeout (the service's End may wait a while in
# the proxy for a client that has stopped reading, up to its stall).
POOL_IDLE_BOUND = POOL_TIMEOUT + 10.0 * SLOW

UNFRAMED_KINDS = ["none", "client_reset", "client_halfclose", "client_stall",
                  "backend_reset", "backend_halfclose", "unknown_via"]
FRAMED_KINDS = ["framed", "framed_client_reset", "framed_client_halfclose",
                "framed_client_stall", "framed_backend_reset", "framed_unknown_via"]
KINDS = UNFRAMED_KINDS + FRAMED_KINDS
# about half the connections are framed
WEIGHTS = [30, 12, 12, 10, 12, 12, 8] + [40, 12, 12, 10, 12, 10]
CODE = {k: i for i, k in enumerate(KINDS)}
MAX_SESSIONS = 4                  # framed sessions per client connection

# What a backend does with each connection it accepts (see SoakBackend).
BACKEND_PLANS = ["reuse", "close_after_end", "close_idle", "drop"]
BACKEND_PLAN_WEIGHTS = [75, 10, 10, 5]

# conn id, fault code, fault index, messages, backend, SHA-256 of the preamble
HELLO = struct.Struct(">QBHHB32s")
MSG = struct.Struct(">IQ")        # payload length, payload seed

ACK = b"\x0b"
ENVELOPE = b"\x06"
END = b"\x07"
NOT_FOUND = fault_record("EndpointNotFound")
UNAVAILABLE = fault_record("EndpointUnavailable")

# Framed sessions by the token in their Via: the plan the backend checks a
# session against.  Emptied after each round.
SESSIONS = {}
SESSIONS_LOCK = threading.Lock()


class Failure(Exception):
    pass


class Abort(Exception):
    """A connection cannot go on; its failure is already counted."""


def payload(seed, n):
    return random.Random(seed).randbytes(n)


def digest(data):
    return hashlib.sha256(data).digest()


def unsent(s):
    """Bytes s has queued that its peer has not acknowledged yet."""
    return struct.unpack("i", fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]


def count_corrupted(n):
    with STATS.lock:
        STATS.corrupted += n


# ------------------------------------------------------------ statistics

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.count = {}
        self.bytes_up = 0
        self.bytes_down = 0
        self.corrupted = 0
        self.passed = 0
        self.failures = []

    def add(self, key, n=1):
        with self.lock:
            self.count[key] = self.count.get(key, 0) + n

    def get(self, key):
        with self.lock:
            return self.count.get(key, 0)

    def fail(self, what):
        with self.lock:
            self.failures.append(what)

    def ok(self):
        with self.lock:
            self.passed += 1

    def verify(self, got, want, want_digest, direction, what):
        """Count got against want; a mismatch counts its bytes as corrupted."""
        if len(got) == len(want) and digest(got) == want_digest:
            with self.lock:
                if direction == "up":
                    self.bytes_up += len(got)
                else:
                    self.bytes_down += len(got)
            return True
        n = min(len(got), len(want))
        bad = sum(1 for a, b in zip(got[:n], want[:n]) if a != b)
        with self.lock:
            self.corrupted += bad
        if bad:
            self.fail(f"{what}: {bad} of {len(want)} bytes corrupted ({direction})")
        else:
            self.fail(f"{what}: the stream ended after {len(got)} of {len(want)} bytes "
                      f"({direction})")
        return False


STATS = Stats()


# ------------------------------------------------------------ framing

class Reader:
    """Buffered reads from a socket, for connections that carry framing
    records; a short result means end of stream, as with recv_exact."""

    def __init__(self, s):
        self.s = s
        self.buf = bytearray()

    def fill(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(min(max(n - len(self.buf), 1 << 16), 1 << 20))
            if not chunk:
                return False
            self.buf += chunk
        return True

    def exact(self, n):
        self.fill(n)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def mbint(self):
        """A record size; None at end of stream, -1 if longer than 5 bytes."""
        v = shift = 0
        for _ in range(5):
            b = self.exact(1)
            if not b:
                return None
            v |= (b[0] & 0x7F) << shift
            shift += 7
            if not b[0] & 0x80:
                return v
        return -1

    def until_close(self, limit=1 << 16):
        rest, how = recv_until_close(self.s, limit=limit)
        out = bytes(self.buf) + rest
        self.buf.clear()
        return out, how

    def preamble(self):
        """(bytes, (mode, via)) of a whole preamble; (bytes, None) if the
        stream ended first.  ValueError if the bytes are not a preamble of
        the records the soak's clients send, in their order."""
        out = bytearray()
        try:
            return self._preamble(out)
        except ValueError as e:
            raise ValueError(f"{e}, after {bytes(out[:80])!r}") from None

    def _preamble(self, out):
        def take(n):
            got = self.exact(n)
            out.extend(got)
            return got if len(got) == n else None

        def string():
            n = self.mbint()
            if n is None:
                return None
            if n < 0 or n > 4096:
                raise ValueError(f"string size {n}")
            out.extend(mbint(n))
            return take(n)

        version = take(3)
        if version is None:
            return bytes(out), None
        if version != b"\x00\x01\x00":
            raise ValueError(f"version record {version.hex()}")
        mode = take(2)
        if mode is None:
            return bytes(out), None
        if mode[0] != 0x01 or mode[1] not in (1, 2):
            raise ValueError(f"mode record {mode.hex()}")
        t = take(1)
        if t is None:
            return bytes(out), None
        if t != b"\x02":
            raise ValueError(f"record {t.hex()} where the Via was due")
        via = string()
        if via is None:
            return bytes(out), None
        t = take(1)
        if t is None:
            return bytes(out), None
        if t == b"\x03":
            if take(1) is None:
                return bytes(out), None
        elif t == b"\x04":
            if string() is None:
                return bytes(out), None
        else:
            raise ValueError(f"record {t.hex()} where the encoding was due")
        t = take(1)
        if t is None:
            return bytes(out), None
        if t == b"\x09":
            # an unframed connection's upgrade: what follows is not framing
            if string() is None:
                return bytes(out), None
        elif t != b"\x0c":
            raise ValueError(f"record {t.hex()} where Preamble End was due")
        return bytes(out), (mode[1], via.decode(errors="replace"))


def via_target(via):
    """(backend index or None, session token or None) for a Via, by the
    soak's routes: net.tcp://+/Svc<b>, net.tcp://soak.example/Exact<b> and
    net.tcp://*/Weak<b>, matched on the whole first segment, case-blind,
    after percent-decoding."""
    m = re.match(r"net\.tcp://([^/?#]*)([^?#]*)", via, re.I)
    if not m:
        return None, None
    host = m.group(1).lower()
    host = host[:host.index("]") + 1] if host.startswith("[") and "]" in host \
        else host.split(":")[0]
    segs = [urllib.parse.unquote(s) for s in m.group(2).split("/")[1:]]
    first = segs[0].lower() if segs else ""
    token = segs[1] if len(segs) > 1 and segs[1].startswith("sess-") else None
    for b in range(NBACKENDS):
        if first in (f"svc{b}", f"weak{b}") or (first == f"exact{b}" and host == "soak.example"):
            return b, token
    return None, token


# ------------------------------------------------------------ backends

class SoakBackend:
    """A WCF-like echo service on a fixed loopback port that can be
    restarted.  It reads preamble after preamble on each connection, checks
    that each routes to it, acks it and serves the session: a framed one
    envelope by envelope up to End, answered with End, after which the
    connection waits for the next preamble; an unframed one (no token in
    its Via) by the client's hello, to the end of the connection.  It checks
    every message that reached it, echoes it, and injects the backend-side
    faults the session's plan asks for."""

    def __init__(self, index):
        self.index = index
        self.name = f"svc{index}"
        self.rng = random.Random(f"{SEED}:{self.name}")   # the accept thread's
        self.lock = threading.Lock()
        self.gaps = []            # (closed at, listening again at)
        self.gap_open = None
        self.active = 0
        self.results = {}         # conn id or (conn id, session) -> messages verified
        self.restart_gap = None
        self.restart_done = threading.Event()
        self.stopping = False
        self.lsock = None
        self.port = 0
        self._listen()
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def _listen(self):
        deadline = time.monotonic() + 5
        while True:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", self.port))
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        s.listen(1024)
        s.settimeout(0.05)
        self.lsock = s

    def restart(self, gap):
        """Close the listening socket, wait gap seconds, listen again on the
        same port.  Done by the accept thread, so no accept() ever runs on
        a closed descriptor.  Connections already accepted go on."""
        self.restart_done.clear()
        self.restart_gap = gap
        self.restart_done.wait(10)

    def in_gap(self, t0, t1):
        with self.lock:
            gaps = list(self.gaps)
            if self.gap_open is not None:
                gaps.append((self.gap_open, time.monotonic()))
        return any(g0 - RESTART_SLACK <= t1 and t0 <= g1 + RESTART_SLACK for g0, g1 in gaps)

    def _loop(self):
        while not self.stopping:
            if self.restart_gap is not None:
                gap, self.restart_gap = self.restart_gap, None
                with self.lock:
                    self.gap_open = time.monotonic()
                self.lsock.close()
                time.sleep(gap)
                self._listen()
                with self.lock:
                    self.gaps.append((self.gap_open, time.monotonic()))
                    self.gap_open = None
                self.restart_done.set()
                continue
            try:
                c, _ = self.lsock.accept()
            except (socket.timeout, BlockingIOError):
                continue
            except OSError:
                continue
            plan = self.rng.choices(BACKEND_PLANS, BACKEND_PLAN_WEIGHTS)[0]
            # a short delay often crosses the proxy's reuse of the
            # connection; a long one outlasts backend_pool_timeout
            delay = self.rng.choice([self.rng.uniform(0.0, 0.02),
                                     self.rng.uniform(0.05, 1.5 * POOL_TIMEOUT)])
            idle = (delay, self.rng.random() < 0.5)
            with self.lock:
                self.active += 1
            STATS.add("backend connections accepted")
            STATS.add("backend plan " + plan)
            threading.Thread(target=self._serve, args=(c, plan, idle), daemon=True).start()
        self.lsock.close()

    def _serve(self, c, plan, idle):
        try:
            c.settimeout(IO_TIMEOUT)
            self._connection(c, Reader(c), plan, idle)
        except socket.timeout:
            STATS.fail(f"backend {self.name}: a connection stalled for {IO_TIMEOUT:.0f}s")
        except OSError:
            pass              # resets and broken pipes are part of the plan
        except Failure as e:
            STATS.fail(f"backend {self.name}: {e}")
        finally:
            try:
                c.close()
            except OSError:
                pass
            with self.lock:
                self.active -= 1

    def _next_preamble_comes(self, c, r, plan, idle):
        """Between sessions, where the proxy keeps the connection in its
        pool: wait for the next preamble's first byte, or end of stream.
        With plan close_idle, give up after a random delay and close the
        connection (False), with FIN or reset; with plan drop, close it
        (reset, unread bytes) as the next preamble comes, unanswered."""
        if plan == "close_idle":
            delay, with_reset = idle
            # Idle from when the proxy has the End: a reset discards what
            # the kernel has not sent yet, and Nagle or a full window can
            # keep the End there for a while.
            deadline = time.monotonic() + IO_TIMEOUT
            while unsent(c):
                if time.monotonic() > deadline:
                    raise Failure(f"the proxy took no bytes for {IO_TIMEOUT:.0f}s "
                                  "after a session's End")
                time.sleep(0.002)
            c.settimeout(delay)
            try:
                r.fill(1)
            except socket.timeout:
                STATS.add("backend closed an idle connection")
                if with_reset:
                    reset(c)
                return False
            c.settimeout(IO_TIMEOUT)
            return True
        c.settimeout(POOL_IDLE_BOUND)
        t0 = time.monotonic()
        try:
            came = r.fill(1)
        except socket.timeout:
            raise Failure(f"a connection idle between sessions was kept "
                          f"{time.monotonic() - t0:.0f}s (backend_pool_timeout {POOL_TIMEOUT}s)")
        c.settimeout(IO_TIMEOUT)
        if came and plan == "drop":
            STATS.add("backend dropped under a preamble")
            reset(c)
            return False
        return True

    def _connection(self, c, r, plan, idle):
        sessions = 0
        while True:
            if sessions and not self._next_preamble_comes(c, r, plan, idle):
                return
            try:
                pre, fields = r.preamble()
            except ValueError as e:
                count_corrupted(1)
                raise Failure(f"{'after session %d, ' % sessions if sessions else ''}"
                              f"bytes that are no preamble: {e}")
            if fields is None:
                if sessions and not pre:
                    STATS.add("backend idle closed by the proxy")
                return        # the client went away inside its preamble
            mode, via = fields
            b, token = via_target(via)
            if b != self.index:
                raise Failure(f"session mis-routed: Via {via!r} (routes to "
                              f"{'svc%d' % b if b is not None else 'nothing'}) reached "
                              f"{self.name} on its connection's session {sessions + 1}")
            sessions += 1
            STATS.add("backend sessions")
            if sessions > 1:
                STATS.add("backend sessions on a reused connection")
            if token is None:
                self._unframed(c, r, pre)
                return        # an unframed session ends its connection
            if not self._framed(c, r, pre, mode, via, token):
                return
            if plan == "close_after_end":
                STATS.add("backend closed a connection after End")
                return

    def _framed(self, c, r, pre, mode, via, token):
        """One framed session; True if it ended with End both ways."""
        with SESSIONS_LOCK:
            sess = SESSIONS.get(token)
            twice = sess is not None and sess.acked
            if sess is not None:
                sess.acked = True
        if sess is None:
            raise Failure(f"Via {via!r}: no such session")
        what = f"{sess.what} at backend {self.name}"
        if digest(pre) != sess.digest:
            count_corrupted(len(pre))
            raise Failure(f"{what}: the replayed preamble differs from the one sent")
        if sess.b != self.index or mode != 2:
            raise Failure(f"{what}: routed to the wrong backend (wanted svc{sess.b})")
        if twice:
            raise Failure(f"{what}: the preamble reached a backend twice")
        c.sendall(ACK)
        verified = 0
        i = 0
        while True:
            t = r.exact(1)
            if not t:
                return False  # the client went away inside the session
            if t == END:
                break
            if t != ENVELOPE:
                count_corrupted(1)
                raise Failure(f"{what}: record {t.hex()} where envelope {i} or End was due")
            size = r.mbint()
            if size is None:
                return False
            if not MSG.size <= size <= MSG.size + MAX_MESSAGE:
                count_corrupted(1)
                raise Failure(f"{what}: envelope {i} size {size} corrupted")
            header = r.exact(MSG.size)
            if len(header) < MSG.size:
                return False
            length, seed = MSG.unpack(header)
            if length != size - MSG.size:
                count_corrupted(MSG.size)
                raise Failure(f"{what}: message {i} header corrupted")
            want = payload(seed, length)
            if sess.kind == "framed_backend_reset" and i == sess.k:
                half = r.exact(length // 2)
                if len(half) == length // 2:
                    STATS.verify(half, want[:len(half)], digest(want[:len(half)]), "up",
                                 f"{what} message {i}")
                reset(c)
                return False
            got = r.exact(length)
            if len(got) < length:
                return False  # the client reset
            if not STATS.verify(got, want, digest(want), "up", f"{what} message {i}"):
                return False
            verified += 1
            i += 1
            c.sendall(sized_envelope(header + got))
        with self.lock:
            self.results[sess.key] = verified
        STATS.add("backend framed sessions ended")
        c.sendall(END)
        return True

    def _unframed(self, c, r, pre):
        c.sendall(ACK)
        hello = r.exact(HELLO.size)
        if len(hello) < HELLO.size:
            return
        conn_id, code, k, nmsgs, index, pre_digest = HELLO.unpack(hello)
        what = f"conn {conn_id} at backend {self.name}"
        if digest(pre) != pre_digest:
            count_corrupted(len(pre))
            raise Failure(f"{what}: the replayed preamble differs from the one sent")
        if index != self.index:
            raise Failure(f"{what}: routed to the wrong backend (wanted svc{index})")
        kind = KINDS[code] if code < len(KINDS) else "?"
        verified = 0
        for i in range(nmsgs):
            if kind == "backend_halfclose" and i == k:
                c.shutdown(socket.SHUT_WR)
            header = r.exact(MSG.size)
            if len(header) < MSG.size:
                return
            length, seed = MSG.unpack(header)
            if length > MAX_MESSAGE:
                count_corrupted(MSG.size)
                raise Failure(f"{what}: message {i} header corrupted")
            want = payload(seed, length)
            if kind == "backend_reset" and i == k:
                half = r.exact(length // 2)
                if len(half) == length // 2:
                    STATS.verify(half, want[:len(half)], digest(want[:len(half)]), "up",
                                 f"{what} message {i}")
                reset(c)
                return
            got = r.exact(length)
            if len(got) < length:
                return        # the client reset
            if not STATS.verify(got, want, digest(want), "up", f"{what} message {i}"):
                return
            verified += 1
            if not (kind == "backend_halfclose" and i >= k):
                c.sendall(header + got)
        extra = r.exact(1)
        if extra:
            raise Failure(f"{what}: bytes after the last message")
        if kind != "backend_halfclose":
            c.shutdown(socket.SHUT_WR)
        with self.lock:
            self.results[conn_id] = verified

    def idle(self):
        with self.lock:
            return self.active == 0

    def close(self):
        self.stopping = True
        self.thread.join(5)


# ------------------------------------------------------------ clients

def random_case(rng, text):
    return "".join(ch.upper() if rng.random() < 0.5 else ch.lower() for ch in text)


def escape_some(rng, text):
    """Percent-encode a few unreserved letters: the Via normalises them away."""
    return "".join(f"%{ord(ch):02X}" if ch.isalnum() and rng.random() < 0.15 else ch
                   for ch in text)


def tail(rng):
    segs = [rng.choice(["a", "Op", "x1", "deep", "%7Euser", "s p"]) for _ in range(rng.randrange(4))]
    out = "".join("/" + s for s in segs)
    if rng.random() < 0.2:
        out += "?q=" + str(rng.randrange(100))
    return out


def routed_via(rng, b, token=None):
    """A Via that routes to backend b; a framed session's token, if any, is
    the segment after the route's."""
    host = rng.choice(["h", "localhost", "10.1.2.3", "[::1]", "Host.Example"])
    port = rng.choice(["", ":808", f":{rng.randrange(1, 65536)}"])
    rest = (f"/{token}" if token else "") + tail(rng)
    style = rng.randrange(3)
    if style == 0:
        return f"net.tcp://{host}{port}/{escape_some(rng, random_case(rng, f'Svc{b}'))}{rest}"
    if style == 1:
        return f"net.tcp://{random_case(rng, 'soak.example')}{port}/Exact{b}{rest}"
    return f"net.tcp://{host}{port}/{random_case(rng, f'weak{b}')}{rest}"


def unknown_via(rng):
    b = rng.randrange(NBACKENDS)
    return rng.choice([
        f"net.tcp://h/Svc{b}x",                       # not a whole segment
        f"net.tcp://other.example/Exact{b}",          # exact route, other host
        f"net.tcp://h/NoSuch/{rng.randrange(1000)}",
        "net.tcp://h/",
        f"net.tcp://h/Weak{NBACKENDS + b}",
    ])


UPGRADE = "application/negotiate"


def random_preamble(rng, via, mode=None):
    mode = mode or rng.choice([1, 2])
    if rng.random() < 0.3:
        ct = rng.choice(["application/soap+msbinsession1", "text/xml; charset=utf-8"])
        return preamble(via, mode=mode, encoding=None)[:-1] + string_record(4, ct) + b"\x0c"
    return preamble(via, mode=mode, encoding=rng.choice([3, 4, 5, 8]))


def message_sizes(rng, kind, n):
    kind = kind.removeprefix("framed_")
    if kind == "client_stall":
        return [rng.randrange(MAX_MESSAGE // 4, MAX_MESSAGE + 1) for _ in range(n)]
    if kind in ("client_reset", "backend_reset", "backend_halfclose"):
        # these go in lock step, so a message must fit the socket buffers
        return [max(2, int(2 ** rng.uniform(0, 18))) for _ in range(n)]
    return [max(1, int(2 ** rng.uniform(0, 20))) for _ in range(n)]


class Session:
    """A framed session as its client plans it.  The backend finds it in
    SESSIONS by the token in its Via, to check the preamble it was given
    and to inject the session's backend-side fault."""

    def __init__(self, client, j, kind):
        rng = client.rng
        self.key = (client.id, j)
        self.kind = kind
        self.what = f"{client.what} session {j + 1}"
        self.token = f"sess-{client.id}-{j}"
        if kind == "framed_unknown_via":
            self.b = None
            self.via = unknown_via(rng)
        else:
            self.b = rng.randrange(NBACKENDS)
            self.via = routed_via(rng, self.b, self.token)
        self.pre = random_preamble(rng, self.via, mode=2)
        self.digest = digest(self.pre)
        self.n = rng.randint(1, 6)
        self.k = rng.randrange(self.n)
        self.sizes = message_sizes(rng, kind, self.n)
        self.seeds = [rng.getrandbits(63) for _ in range(self.n)]
        self.pipeline = rng.random() < 0.5
        self.acked = False        # set by the backend that acks it
        self.sent_at = None       # when the client sent the preamble
        if self.b is not None:
            with SESSIONS_LOCK:
                SESSIONS[self.token] = self

    def prepare(self):
        self.headers = [MSG.pack(self.sizes[i], self.seeds[i]) for i in range(self.n)]
        self.payloads = [payload(self.seeds[i], self.sizes[i]) for i in range(self.n)]
        self.digests = [digest(p) for p in self.payloads]

    def envelope(self, i):
        return sized_envelope(self.headers[i] + self.payloads[i])

    def release(self):
        self.headers = self.payloads = self.digests = None


class Client:
    def __init__(self, conn_id, daemons, backends):
        self.id = conn_id
        self.rng = random.Random(f"{SEED}:{conn_id}")
        self.daemon = self.rng.choice(daemons)
        self.backends = backends
        self.kind = self.rng.choices(KINDS, WEIGHTS)[0]
        self.what = f"conn {conn_id} ({self.kind}, forward {self.daemon.forward_method})"
        self.expect = []          # (result key, what, messages the backend must verify)

    def run(self):
        s = self.daemon.connect(timeout=20.0)
        # the client's port names the connection in the daemon's log
        self.what = self.what[:-1] + f", port {s.getsockname()[1]})"
        try:
            if self.kind == "unknown_via":
                self._unknown(s)
            elif self.kind in FRAMED_KINDS:
                self._framed_connection(s)
            else:
                self._routed(s)
        finally:
            s.close()

    def _unknown(self, s):
        via = unknown_via(self.rng)
        s.sendall(random_preamble(self.rng, via))
        got, how = recv_until_close(s, limit=1 << 16)
        if got != NOT_FOUND or how != "eof":
            raise Failure(f"{self.what}: Via {via!r} got {got[:80]!r} then {how}, "
                          "not exactly EndpointNotFound")
        STATS.add("faulted EndpointNotFound")

    def _not_acked(self, what, first, rest, via, b, t0, t1):
        """The answer to a preamble was not the ack: fine only if it is
        exactly EndpointUnavailable, or a reset, while backend b was down."""
        backend = self.backends[b]
        if first == b"\x08":
            more, how = rest()
            got = first + more
            if got != UNAVAILABLE or how != "eof":
                raise Failure(f"{what}: Via {via!r} got {got[:80]!r} then {how}")
            if not backend.in_gap(t0, t1):
                raise Failure(f"{what}: EndpointUnavailable while svc{b} was up")
            STATS.add("faulted EndpointUnavailable (backend restarting)")
            return
        if backend.in_gap(t0, t1):
            STATS.add("reset before the ack (queued on a closed listener)")
            return
        raise Failure(f"{what}: Via {via!r} got {first!r} instead of the ack")

    def _msg(self, i):
        return self.headers[i] + self.payloads[i]

    def _read_echo(self, s, i):
        header = recv_exact(s, MSG.size)
        if len(header) < MSG.size:
            raise Failure(f"{self.what}: the stream ended before echo {i}")
        if header != self.headers[i]:
            count_corrupted(sum(1 for a, b in zip(header, self.headers[i]) if a != b))
            raise Failure(f"{self.what}: echo {i} header {header!r} != {self.headers[i]!r}")
        got = recv_exact(s, len(self.payloads[i]))
        if not STATS.verify(got, self.payloads[i], self.digests[i], "down",
                            f"{self.what} echo {i}"):
            raise Abort()

    def _expect_eof(self, s, why):
        extra = s.recv(1 << 16)
        if extra:
            raise Failure(f"{self.what}: {len(extra)} unexpected bytes {why}")

    def _routed(self, s):
        rng = self.rng
        b = rng.randrange(NBACKENDS)
        via = routed_via(rng, b)
        # raw messages after an upgrade the daemon passes through, a stream
        # it cannot read (as NegotiateStream is): a pinned pipe
        pre = random_preamble(rng, via)[:-1] + string_record(9, UPGRADE)
        n = rng.randint(1, 6)
        k = rng.randrange(n)
        sizes = message_sizes(rng, self.kind, n)
        seeds = [rng.getrandbits(63) for _ in range(n)]
        self.payloads = [payload(seeds[i], sizes[i]) for i in range(n)]
        self.digests = [digest(p) for p in self.payloads]
        self.headers = [MSG.pack(sizes[i], seeds[i]) for i in range(n)]
        hello = HELLO.pack(self.id, CODE[self.kind], k, n, b, digest(pre))
        pipeline = rng.random() < 0.5

        t0 = time.monotonic()
        try:
            s.sendall(pre + (hello if pipeline else b""))
            first = s.recv(1)
        except ConnectionResetError:
            first = None
        t1 = time.monotonic()
        if first != ACK:
            self._not_acked(self.what, first, lambda: recv_until_close(s, limit=1 << 16),
                            via, b, t0, t1)
            return
        STATS.add("served")
        STATS.add(f"served, forward {self.daemon.forward_method}")
        if not pipeline:
            s.sendall(hello)
        getattr(self, "_" + self.kind)(s, n, k)

    # -- the unframed connection plans, after the ack

    def _pipelined(self, s, n, halfclose, stall_at=None, stall=0.0):
        failed = []

        def sender():
            try:
                for i in range(n):
                    s.sendall(self._msg(i))
                if halfclose:
                    s.shutdown(socket.SHUT_WR)
            except OSError as e:
                failed.append(e)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        for i in range(n):
            if i == stall_at:
                time.sleep(stall)
            self._read_echo(s, i)
        t.join(IO_TIMEOUT)
        if t.is_alive():
            raise Failure(f"{self.what}: sending stalled")
        if failed:
            raise Failure(f"{self.what}: send failed: {failed[0]}")
        if not halfclose:
            s.shutdown(socket.SHUT_WR)
        self._expect_eof(s, "after the last echo")
        self.expect.append((self.id, self.what, n))

    def _none(self, s, n, k):
        self._pipelined(s, n, halfclose=False)

    def _client_halfclose(self, s, n, k):
        self._pipelined(s, n, halfclose=True)

    def _client_stall(self, s, n, k):
        self._pipelined(s, n, halfclose=False, stall_at=k, stall=self.rng.uniform(0.3, 2.0))

    def _client_reset(self, s, n, k):
        for i in range(k):
            s.sendall(self._msg(i))
            self._read_echo(s, i)
        msg = self._msg(k)
        s.sendall(msg[:MSG.size + len(self.payloads[k]) // 2])
        reset(s)

    def _backend_reset(self, s, n, k):
        for i in range(k):
            s.sendall(self._msg(i))
            self._read_echo(s, i)
        try:
            s.sendall(self._msg(k))
            extra = s.recv(1 << 16)
        except (ConnectionResetError, BrokenPipeError):
            return
        if extra:
            raise Failure(f"{self.what}: {len(extra)} bytes after the backend reset")

    def _backend_halfclose(self, s, n, k):
        for i in range(k):
            s.sendall(self._msg(i))
            self._read_echo(s, i)
        self._expect_eof(s, "after the backend's half-close")
        for i in range(k, n):
            s.sendall(self._msg(i))
        s.shutdown(socket.SHUT_WR)
        self.expect.append((self.id, self.what, n))

    # -- framed connections: sessions one after the other

    def _framed_connection(self, s):
        """1 to MAX_SESSIONS sessions; the connection's fault, if any, in
        the last."""
        rng = self.rng
        count = rng.randint(1, MAX_SESSIONS)
        plans = [Session(self, j, "framed" if j < count - 1 else self.kind)
                 for j in range(count)]
        r = Reader(s)
        self.ended = 0
        try:
            for j, p in enumerate(plans):
                try:
                    if not self._session(s, r, p, plans[j + 1] if j + 1 < count else None):
                        return
                except socket.timeout:
                    raise
                except OSError as e:
                    raise Failure(f"{p.what}: {e!r}")
        finally:
            STATS.add(f"framed connections with {self.ended} sessions ended")

    def _session(self, s, r, p, nxt):
        """One session; True if the connection goes on with nxt."""
        if p.sent_at is None:
            p.sent_at = time.monotonic()
            s.sendall(p.pre)
        if p.kind == "framed_unknown_via":
            got, how = r.until_close()
            if got != NOT_FOUND or how != "eof":
                raise Failure(f"{p.what}: Via {p.via!r} got {got[:80]!r} then {how}, "
                              "not exactly EndpointNotFound")
            STATS.add("faulted EndpointNotFound")
            STATS.add("framed sessions faulted EndpointNotFound")
            return False
        try:
            first = r.exact(1)
        except ConnectionResetError:
            first = None
        t1 = time.monotonic()
        if first != ACK:
            self._not_acked(p.what, first, r.until_close, p.via, p.b, p.sent_at, t1)
            return False
        STATS.add("framed sessions served")
        STATS.add(f"framed sessions served, forward {self.daemon.forward_method}")
        p.prepare()
        try:
            return getattr(self, "_" + p.kind)(s, r, p, nxt)
        finally:
            p.release()

    def _read_envelope(self, r, p, i):
        t = r.exact(1)
        if t != ENVELOPE:
            if not t:
                raise Failure(f"{p.what}: the stream ended before echo {i}")
            count_corrupted(1)
            raise Failure(f"{p.what}: record {t.hex()} instead of echo {i}")
        size = r.mbint()
        if size != MSG.size + len(p.payloads[i]):
            if size is None:
                raise Failure(f"{p.what}: the stream ended inside echo {i}")
            count_corrupted(1)
            raise Failure(f"{p.what}: echo {i} size {size}, not {MSG.size + len(p.payloads[i])}")
        header = r.exact(MSG.size)
        if header != p.headers[i]:
            if len(header) < MSG.size:
                raise Failure(f"{p.what}: the stream ended inside echo {i}")
            count_corrupted(sum(1 for a, b in zip(header, p.headers[i]) if a != b))
            raise Failure(f"{p.what}: echo {i} header {header!r} != {p.headers[i]!r}")
        got = r.exact(len(p.payloads[i]))
        if not STATS.verify(got, p.payloads[i], p.digests[i], "down", f"{p.what} echo {i}"):
            raise Abort()

    def _read_end(self, r, p):
        t = r.exact(1)
        if t != END:
            if t:
                count_corrupted(1)
            raise Failure(f"{p.what}: {t.hex() or 'end of stream'} instead of the service's End")

    def _ended(self, p):
        """End both ways: the backend has counted the session."""
        self.expect.append((p.key, p.what, p.n))
        self.ended += 1
        STATS.add("framed sessions ended")

    def _framed_eof(self, r, p, why):
        extra, how = r.until_close()
        if extra or how != "eof":
            raise Failure(f"{p.what}: {len(extra)} bytes then {how} {why}")

    def _exchange(self, s, r, p, end, halfclose=False, stall_at=None, stall=0.0):
        """Send the envelopes, then end (End, perhaps the next preamble),
        from a thread, while reading the echoes here."""
        failed = []

        def sender():
            try:
                for i in range(p.n):
                    s.sendall(p.envelope(i))
                s.sendall(end)
                if halfclose:
                    s.shutdown(socket.SHUT_WR)
            except OSError as e:
                failed.append(e)

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        for i in range(p.n):
            if i == stall_at:
                time.sleep(stall)
            self._read_envelope(r, p, i)
        t.join(IO_TIMEOUT)
        if t.is_alive():
            raise Failure(f"{p.what}: sending stalled")
        if failed:
            raise Failure(f"{p.what}: send failed: {failed[0]}")

    def _lock_step(self, s, r, p, count):
        for i in range(count):
            s.sendall(p.envelope(i))
            self._read_envelope(r, p, i)

    def _after_end(self, s, r, p, nxt):
        """The service's End came: the next session, or close, with FIN
        and a look for end of stream or at once."""
        self._ended(p)
        if nxt is not None:
            return True
        if self.rng.random() < 0.5:
            s.shutdown(socket.SHUT_WR)
            self._framed_eof(r, p, "after the last session")
        return False

    # -- the framed session plans, after the ack

    def _framed(self, s, r, p, nxt, stall_at=None, stall=0.0):
        early = nxt is not None and self.rng.random() < 0.2
        end = END + (nxt.pre if early else b"")
        if early:
            nxt.sent_at = time.monotonic()
            STATS.add("framed next preamble sent behind the End")
        if p.pipeline or stall_at is not None:
            self._exchange(s, r, p, end, stall_at=stall_at, stall=stall)
        else:
            self._lock_step(s, r, p, p.n)
            s.sendall(end)
        self._read_end(r, p)
        return self._after_end(s, r, p, nxt)

    def _framed_client_stall(self, s, r, p, nxt):
        return self._framed(s, r, p, nxt, stall_at=p.k, stall=self.rng.uniform(0.3, 2.0))

    def _framed_client_halfclose(self, s, r, p, nxt):
        self._exchange(s, r, p, END, halfclose=True)
        self._read_end(r, p)
        self._ended(p)
        self._framed_eof(r, p, "after the service's End")
        return False

    def _framed_client_reset(self, s, r, p, nxt):
        self._lock_step(s, r, p, p.k)
        env = p.envelope(p.k)
        s.sendall(env[:len(env) - len(p.payloads[p.k]) // 2])
        reset(s)
        return False

    def _framed_backend_reset(self, s, r, p, nxt):
        self._lock_step(s, r, p, p.k)
        try:
            s.sendall(p.envelope(p.k))
            extra = r.exact(1)
        except (ConnectionResetError, BrokenPipeError):
            return False
        if extra:
            raise Failure(f"{p.what}: bytes after the backend reset")
        return False


# ------------------------------------------------------------ the run

def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_census(d):
    fds = d.fds()
    sockets = sum(1 for f in fds if f.startswith("socket:"))
    pipes = sum(1 for f in fds if f.startswith("pipe:"))
    others = sorted(f for f in fds if not f.startswith(("socket:", "pipe:")))
    return {"total": len(fds), "sockets": sockets, "pipes": pipes, "others": others}


class Round:
    def __init__(self, daemons, backends, next_id):
        self.daemons = daemons
        self.backends = backends
        self.next_id = next_id
        self.expected = []       # (result key, what, messages)
        self.lock = threading.Lock()
        self.started = {}        # conn id -> start time, while open

    def worker(self, until):
        while time.monotonic() < until:
            conn_id = self.next_id()
            c = Client(conn_id, self.daemons, self.backends)
            STATS.add("kind " + c.kind)
            t0 = time.monotonic()
            with self.lock:
                self.started[conn_id] = (t0, c.what)
            try:
                c.run()
            except Failure as e:
                STATS.fail(str(e))
            except Abort:
                pass
            except socket.timeout:
                STATS.fail(f"{c.what}: no progress for {IO_TIMEOUT:.0f}s (hang)")
            except OSError as e:
                STATS.fail(f"{c.what}: {e!r}")
            else:
                took = time.monotonic() - t0
                if took > CONN_BOUND:
                    STATS.fail(f"{c.what}: took {took:.1f}s (bound {CONN_BOUND:.0f}s)")
                else:
                    STATS.ok()
            with self.lock:
                # a session that ended with End both ways was counted by its
                # backend, whatever the connection did afterwards
                self.expected.extend(c.expect)
                del self.started[conn_id]


def chaos(backends, rng, until, stop):
    while not stop.is_set():
        if stop.wait(rng.uniform(1.0, 3.0)) or time.monotonic() > until - 1.0:
            return
        b = rng.choice(backends)
        b.restart(rng.uniform(0.2, 0.8))
        STATS.add("kind backend_restart")


def run_round(daemons, backends, next_id, seconds, chaos_rng):
    r = Round(daemons, backends, next_id)
    until = time.monotonic() + seconds
    stop = threading.Event()
    ct = threading.Thread(target=chaos, args=(backends, chaos_rng, until, stop), daemon=True)
    ct.start()
    workers = [threading.Thread(target=r.worker, args=(until,), daemon=True)
               for _ in range(CLIENTS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(max(0.0, until - time.monotonic()) + CONN_BOUND + DRAIN_BOUND)
    stop.set()
    ct.join(10)
    if any(w.is_alive() for w in workers):
        with r.lock:
            stuck = sorted(r.started.items())
        for conn_id, (t0, what) in stuck[:10]:
            STATS.fail(f"{what}: still open after {time.monotonic() - t0:.0f}s (hang)")
        return False
    deadline = time.monotonic() + DRAIN_BOUND
    while not all(b.idle() for b in backends) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not all(b.idle() for b in backends):
        STATS.fail("backends still serving connections after the drain bound")
    for key, what, n in r.expected:
        got = [b.results.get(key) for b in backends]
        got = [g for g in got if g is not None]
        if got != [n]:
            STATS.fail(f"{what}: the backend verified {got} of {n} messages")
    with SESSIONS_LOCK:
        SESSIONS.clear()
    return True


def check_daemon(d, base, label):
    """Sockets back to the start exactly, pipes within the pool, nothing else
    new.  The pool's backend connections expire after POOL_TIMEOUT, so
    waiting for the sockets also checks that they do."""
    try:
        wait_for(lambda: fd_census(d)["sockets"] == base["sockets"], DRAIN_BOUND,
                 what="sockets back to baseline")
    except AssertionError:
        pass
    now = fd_census(d)
    ok = True
    if now["sockets"] != base["sockets"]:
        STATS.fail(f"daemon {d.forward_method} {label}: {now['sockets']} sockets, "
                   f"{base['sockets']} at the start")
        ok = False
    if now["pipes"] > PIPE_FDS_PER_WORKER * d.workers:
        STATS.fail(f"daemon {d.forward_method} {label}: {now['pipes']} pipe fds (the pools "
                   f"of {d.workers} workers hold at most {PIPE_FDS_PER_WORKER * d.workers})")
        ok = False
    if now["others"] != base["others"]:
        STATS.fail(f"daemon {d.forward_method} {label}: descriptors {now['others']}, "
                   f"{base['others']} at the start")
        ok = False
    return now, ok


def main():
    raise_fd_limit()
    print(f"soak: seed {SEED} (SOAK_SEED={SEED} repeats it), {SECONDS:.0f}s of load, "
          f"{CLIENTS} client threads, forward {', '.join(FORWARD)} side by side")
    sys.stdout.flush()
    backends = [SoakBackend(i) for i in range(NBACKENDS)]
    routes = [(b.name, [f"net.tcp://+/Svc{b.index}", f"net.tcp://soak.example/Exact{b.index}",
                        f"net.tcp://*/Weak{b.index}"], b.addr) for b in backends]
    daemons = []
    try:
        for method in FORWARD:
            d = Daemon(routes, forward=method, log_level=LOG_LEVEL,
                       extra_global=f"backend_pool_timeout = {POOL_TIMEOUT}s")
            d.forward_method = method
            daemons.append(d)
            d.start()
            m = re.search(r"(\d+) workers", d.log())
            d.workers = int(m.group(1)) if m else 1
        return soak(daemons, backends)
    finally:
        # whatever happened, no daemon outlives the test
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
        for b in backends:
            b.close()


def rss_tolerance(d):
    """How far d's RSS may grow, in kB."""
    return RSS_TOLERANCE_KB + (RING_KB * d.workers if d.forward_method == "uring" else 0)


def soak(daemons, backends):
    base = {}
    for d in daemons:
        base[d] = (fd_census(d), proc_status(d.pid))

    counter = [0]
    counter_lock = threading.Lock()

    def next_id():
        with counter_lock:
            counter[0] += 1
            return counter[0]

    chaos_rng = random.Random(f"{SEED}:chaos")
    round_seconds = max(5.0, min(30.0, SECONDS / 3))
    started = time.monotonic()
    warm = {}
    checks_ok = 0
    rounds = 0
    while time.monotonic() - started < SECONDS - 1:
        left = SECONDS - (time.monotonic() - started)
        if not run_round(daemons, backends, next_id, min(round_seconds, left), chaos_rng):
            break
        rounds += 1
        dead = [d for d in daemons if d.proc.poll() is not None]
        for d in daemons:
            if d in dead:
                continue
            now, ok = check_daemon(d, base[d][0], f"after round {rounds}")
            checks_ok += ok
            warm.setdefault(d, proc_status(d.pid))
        print(f"soak: round {rounds}: {counter[0]} connections, "
              f"{STATS.get('framed sessions ended')} framed sessions, "
              f"{STATS.bytes_up + STATS.bytes_down} bytes verified, "
              f"{len(STATS.failures)} failures")
        sys.stdout.flush()
        if dead:
            break             # reported below

    ends = {}
    for d in daemons:
        alive = d.proc.poll() is None
        rss_end = proc_status(d.pid) if alive else 0
        fds_end = fd_census(d) if alive else None
        ends[d] = (alive, rss_end, fds_end)
        status = d.stop()
        if not alive:
            STATS.fail(f"daemon {d.forward_method} died: exit {status}")
        elif status != 0:
            STATS.fail(f"daemon {d.forward_method}: exit {status} after SIGTERM")
        else:
            checks_ok += 1
        log = d.log()
        for marker in ("runtime error", "AddressSanitizer", "LeakSanitizer", "ERROR SUMMARY"):
            if marker in log:
                STATS.fail(f"daemon {d.forward_method}: its log mentions {marker!r}")
        if alive and RSS_CHECKED and rss_end - base[d][1] > rss_tolerance(d):
            STATS.fail(f"daemon {d.forward_method}: RSS grew {rss_end - base[d][1]} kB "
                       f"(tolerance {rss_tolerance(d)} kB)")
        elif alive:
            checks_ok += 1

    # ------------------------------------------------------------ report
    c = STATS.count
    print(f"soak: {rounds} rounds, {counter[0]} connections opened")
    unframed = sum(c.get("kind " + k, 0) for k in UNFRAMED_KINDS)
    framed = sum(c.get("kind " + k, 0) for k in FRAMED_KINDS)
    print(f"soak: connections served: {c.get('served', 0)} unframed of {unframed} (" +
          ", ".join(f"{m} {c.get(f'served, forward {m}', 0)}" for m in FORWARD) + ")")
    print(f"soak: framed sessions served: {c.get('framed sessions served', 0)} on {framed} "
          "framed connections (" + ", ".join(
              f"{m} {c.get(f'framed sessions served, forward {m}', 0)}" for m in FORWARD) +
          "), "
          f"{c.get('framed sessions ended', 0)} ended with End both ways, "
          f"{c.get('framed next preamble sent behind the End', 0)} next preambles sent "
          f"behind the End")
    per = {n: c.get(f"framed connections with {n} sessions ended", 0)
           for n in range(MAX_SESSIONS + 1)}
    mean = sum(n * k for n, k in per.items()) / max(1, sum(per.values()))
    print("soak: sessions ended per framed client connection: "
          + ", ".join(f"{n}: {k}" for n, k in per.items()) + f" (mean {mean:.2f})")
    accepted = c.get("backend connections accepted", 0)
    sessions = c.get("backend sessions", 0)
    reused = c.get("backend sessions on a reused connection", 0)
    print(f"soak: backends: {accepted} connections accepted for {sessions} sessions, "
          f"{reused} of them on a reused connection (the pool saved "
          f"{100 * reused / max(1, sessions):.0f}% of the dials)")
    print("soak: backend connection plans: "
          + ", ".join(f"{p}={c.get('backend plan ' + p, 0)}" for p in BACKEND_PLANS)
          + f"; closed after End {c.get('backend closed a connection after End', 0)}, "
          f"closed idle {c.get('backend closed an idle connection', 0)}, "
          f"dropped under a preamble {c.get('backend dropped under a preamble', 0)}, "
          f"idle ones the proxy closed {c.get('backend idle closed by the proxy', 0)}")
    kinds = ", ".join(f"{k}={c.get('kind ' + k, 0)}"
                      for k in UNFRAMED_KINDS[1:] + FRAMED_KINDS[1:] + ["backend_restart"])
    print(f"soak: faults injected: {kinds}")
    print(f"soak: fault records checked: EndpointNotFound={c.get('faulted EndpointNotFound', 0)} "
          f"({c.get('framed sessions faulted EndpointNotFound', 0)} in framed sessions), "
          f"EndpointUnavailable={c.get('faulted EndpointUnavailable (backend restarting)', 0)}; "
          f"reset before ack during a restart={c.get('reset before the ack (queued on a closed listener)', 0)}")
    print(f"soak: bytes verified: {STATS.bytes_up + STATS.bytes_down} "
          f"(client to backend {STATS.bytes_up}, backend to client {STATS.bytes_down})")
    print(f"soak: corrupted bytes: {STATS.corrupted}")
    for d in daemons:
        b_fds, b_rss = base[d]
        alive, rss_end, fds_end = ends[d]
        end = (f"{fds_end['total']} (sockets {fds_end['sockets']}, pipes {fds_end['pipes']})"
               if fds_end else "(dead)")
        print(f"soak: daemon forward={d.forward_method} ({d.workers} workers): fds start {b_fds['total']} "
              f"(sockets {b_fds['sockets']}, pipes {b_fds['pipes']}), end {end}; "
              f"RSS start {b_rss} kB, after round 1 {warm.get(d, 0)} kB, end {rss_end} kB "
              + (f"(tolerance +{rss_tolerance(d)} kB)" if RSS_CHECKED else
                 "(not checked: an ASan build; LeakSanitizer checks at exit)"))
    if STATS.corrupted:
        STATS.fail(f"{STATS.corrupted} corrupted bytes")
    if c.get("framed sessions ended", 0) >= 100 and not reused:
        STATS.fail(f"{c.get('framed sessions ended', 0)} framed sessions, and not one "
                   "reused a pooled backend connection")
    # the daemon's own failures first: they explain the connections'
    STATS.failures.sort(key=lambda f: not f.startswith("daemon"))
    for f in STATS.failures[:30]:
        print(f"FAIL {f}")
    if len(STATS.failures) > 30:
        print(f"FAIL ... and {len(STATS.failures) - 30} more")
    if STATS.failures:
        for d in daemons:
            print(f"--- daemon forward={d.forward_method} log, last lines:")
            print("\n".join(d.log().splitlines()[-20:]))
    passed = STATS.passed + checks_ok
    print(f"soak: {passed} passed, {len(STATS.failures)} failed")
    return 1 if STATS.failures else 0


if __name__ == "__main__":
    own_tempdir()
    status = main()
    drop_tempdir(status == 0)
    sys.exit(status)
