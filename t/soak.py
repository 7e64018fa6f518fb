"""Soak test: the real daemon under many clients and injected faults, every
forwarded byte checked end to end.

Two daemons run side by side, one with forward = splice and one with
forward = copy, both routing to three Python backends.  Client threads open
connection after connection against either daemon, each with a random Via
(some match no route and must get exactly the EndpointNotFound fault
record), then send 1 to 6 messages of 1 B to 1 MiB.  A message is a 12-byte
header (length, seed) and bytes generated from the seed, so both ends can
check it: the backend checks what reached it and echoes it, the client
checks the echo, both by SHA-256.

Faults, chosen per connection: the client resets mid-message; the client
half-closes, then reads the rest; the client stops reading for a while, so
backpressure builds through the proxy; the backend resets mid-message; the
backend half-closes early and goes on reading.  Meanwhile a chaos thread
restarts backends (closes the listening socket, reopens the same port); a
connection routed during the gap must get exactly the EndpointUnavailable
fault record (or, if the kernel had already queued it on the closed
listener, a reset before the backend's ack).

The run is cut into rounds.  After each, the load drains and the daemons
are checked: each holds exactly the sockets it had at the start, at most 16
pipe descriptors per worker (its pipe pool), the same other descriptors, and
an RSS within RSS_TOLERANCE_KB of the start.  At the end both must still be alive and
exit 0 on SIGTERM.  Any corrupted byte, leak, crash, or connection that takes
longer than CONN_BOUND seconds is a failure, and the exit status is 1.

Environment:
  NETTCPD        the daemon (make soak sets it)
  SOAK_SECONDS   how long to load, 180 by default; hours are fine
  SOAK_SEED      the seed; printed, and by default random
  SOAK_CLIENTS   client threads, 24 by default
"""

import hashlib
import os
import random
import re
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, Daemon, complete_preamble, fault_record,  # noqa: E402
                          preamble, raise_fd_limit, read_preamble, recv_exact,
                          recv_until_close, reset, string_record, wait_for)

SECONDS = float(os.environ.get("SOAK_SECONDS") or 180)
SEED = int(os.environ.get("SOAK_SEED") or random.SystemRandom().randrange(1 << 32))
CLIENTS = int(os.environ.get("SOAK_CLIENTS") or 24)

NBACKENDS = 3
MAX_MESSAGE = 1 << 20
IO_TIMEOUT = 20.0 * SLOW          # one recv or send that waits longer: a hang
CONN_BOUND = 60.0 * SLOW          # one whole connection that takes longer: a hang
DRAIN_BOUND = 30.0 * SLOW         # after a round, everything must be closed by then
RESTART_SLACK = 0.1               # seconds around a restart gap
# RSS may grow once with the peak load (the allocator keeps freed pages, libev
# grows its fd tables); a leak would grow with every connection instead.
RSS_TOLERANCE_KB = 4 * 1024
PIPE_FDS_PER_WORKER = 16          # each worker's pipe pool keeps up to 8 pipes

KINDS = ["none", "client_reset", "client_halfclose", "client_stall",
         "backend_reset", "backend_halfclose", "unknown_via"]
WEIGHTS = [30, 12, 12, 10, 12, 12, 8]
CODE = {k: i for i, k in enumerate(KINDS)}

# conn id, fault code, fault index, messages, backend, SHA-256 of the preamble
HELLO = struct.Struct(">QBHHB32s")
MSG = struct.Struct(">IQ")        # payload length, payload seed

ACK = b"\x0b"
NOT_FOUND = fault_record("EndpointNotFound")
UNAVAILABLE = fault_record("EndpointUnavailable")


class Failure(Exception):
    pass


class Abort(Exception):
    """A connection cannot go on; its failure is already counted."""


def payload(seed, n):
    return random.Random(seed).randbytes(n)


def digest(data):
    return hashlib.sha256(data).digest()


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


# ------------------------------------------------------------ backends

class SoakBackend:
    """An echo service on a fixed loopback port that can be restarted.  It
    checks the preamble the proxy replayed and every message that reached
    it, echoes the messages, and injects the backend-side faults the
    client's hello asks for."""

    def __init__(self, index):
        self.index = index
        self.name = f"svc{index}"
        self.lock = threading.Lock()
        self.gaps = []            # (closed at, listening again at)
        self.gap_open = None
        self.active = 0
        self.results = {}         # conn id -> messages verified before a clean EOF
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
        a closed descriptor."""
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
            with self.lock:
                self.active += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()
        self.lsock.close()

    def _serve(self, c):
        try:
            c.settimeout(IO_TIMEOUT)
            self._session(c)
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

    def _session(self, c):
        pre = read_preamble(c)
        if not complete_preamble(pre):
            return            # the client went away inside its preamble
        c.sendall(ACK)
        hello = recv_exact(c, HELLO.size)
        if len(hello) < HELLO.size:
            return
        conn_id, code, k, nmsgs, index, pre_digest = HELLO.unpack(hello)
        what = f"conn {conn_id} at backend {self.name}"
        if digest(pre) != pre_digest:
            with STATS.lock:
                STATS.corrupted += len(pre)
            raise Failure(f"{what}: the replayed preamble differs from the one sent")
        if index != self.index:
            raise Failure(f"{what}: routed to the wrong backend (wanted svc{index})")
        kind = KINDS[code] if code < len(KINDS) else "?"
        verified = 0
        for i in range(nmsgs):
            if kind == "backend_halfclose" and i == k:
                c.shutdown(socket.SHUT_WR)
            header = recv_exact(c, MSG.size)
            if len(header) < MSG.size:
                return
            length, seed = MSG.unpack(header)
            if length > MAX_MESSAGE:
                with STATS.lock:
                    STATS.corrupted += MSG.size
                raise Failure(f"{what}: message {i} header corrupted")
            want = payload(seed, length)
            if kind == "backend_reset" and i == k:
                half = recv_exact(c, length // 2)
                if len(half) == length // 2:
                    STATS.verify(half, want[:len(half)], digest(want[:len(half)]), "up",
                                 f"{what} message {i}")
                reset(c)
                return
            got = recv_exact(c, length)
            if len(got) < length:
                return        # the client reset
            if not STATS.verify(got, want, digest(want), "up", f"{what} message {i}"):
                return
            verified += 1
            if not (kind == "backend_halfclose" and i >= k):
                c.sendall(header + got)
        extra = c.recv(1)
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


def routed_via(rng, b):
    host = rng.choice(["h", "localhost", "10.1.2.3", "[::1]", "Host.Example"])
    port = rng.choice(["", ":808", f":{rng.randrange(1, 65536)}"])
    style = rng.randrange(3)
    if style == 0:
        return f"net.tcp://{host}{port}/{escape_some(rng, random_case(rng, f'Svc{b}'))}{tail(rng)}"
    if style == 1:
        return f"net.tcp://{random_case(rng, 'soak.example')}{port}/Exact{b}{tail(rng)}"
    return f"net.tcp://{host}{port}/{random_case(rng, f'weak{b}')}{tail(rng)}"


def unknown_via(rng):
    b = rng.randrange(NBACKENDS)
    return rng.choice([
        f"net.tcp://h/Svc{b}x",                       # not a whole segment
        f"net.tcp://other.example/Exact{b}",          # exact route, other host
        f"net.tcp://h/NoSuch/{rng.randrange(1000)}",
        "net.tcp://h/",
        f"net.tcp://h/Weak{NBACKENDS + b}",
    ])


def random_preamble(rng, via):
    mode = rng.choice([1, 2])
    if rng.random() < 0.3:
        ct = rng.choice(["application/soap+msbinsession1", "text/xml; charset=utf-8"])
        return preamble(via, mode=mode, encoding=None)[:-1] + string_record(4, ct) + b"\x0c"
    return preamble(via, mode=mode, encoding=rng.choice([3, 4, 5, 8]))


def message_sizes(rng, kind, n):
    if kind == "client_stall":
        return [rng.randrange(MAX_MESSAGE // 4, MAX_MESSAGE + 1) for _ in range(n)]
    if kind in ("client_reset", "backend_reset", "backend_halfclose"):
        # these go in lock step, so a message must fit the socket buffers
        return [max(2, int(2 ** rng.uniform(0, 18))) for _ in range(n)]
    return [max(1, int(2 ** rng.uniform(0, 20))) for _ in range(n)]


class Client:
    def __init__(self, conn_id, daemons, backends):
        self.id = conn_id
        self.rng = random.Random(f"{SEED}:{conn_id}")
        self.daemon = self.rng.choice(daemons)
        self.backends = backends
        self.kind = self.rng.choices(KINDS, WEIGHTS)[0]
        self.what = f"conn {conn_id} ({self.kind}, forward {self.daemon.forward_method})"
        self.expect_backend = None   # messages the backend must verify

    def run(self):
        """One connection; returns what the backend must have recorded."""
        s = self.daemon.connect(timeout=20.0)
        try:
            if self.kind == "unknown_via":
                self._unknown(s)
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

    def _msg(self, i):
        return self.headers[i] + self.payloads[i]

    def _read_echo(self, s, i):
        header = recv_exact(s, MSG.size)
        if len(header) < MSG.size:
            raise Failure(f"{self.what}: the stream ended before echo {i}")
        if header != self.headers[i]:
            with STATS.lock:
                STATS.corrupted += sum(1 for a, b in zip(header, self.headers[i]) if a != b)
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
        backend = self.backends[b]
        via = routed_via(rng, b)
        pre = random_preamble(rng, via)
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
            if first == b"\x08":
                rest, how = recv_until_close(s, limit=1 << 16)
                got = first + rest
                if got != UNAVAILABLE or how != "eof":
                    raise Failure(f"{self.what}: Via {via!r} got {got[:80]!r} then {how}")
                if not backend.in_gap(t0, t1):
                    raise Failure(f"{self.what}: EndpointUnavailable while svc{b} was up")
                STATS.add("faulted EndpointUnavailable (backend restarting)")
                return
            if backend.in_gap(t0, t1):
                STATS.add("reset before the ack (queued on a closed listener)")
                return
            raise Failure(f"{self.what}: Via {via!r} got {first!r} instead of the ack")
        STATS.add("served")
        STATS.add(f"served, forward {self.daemon.forward_method}")
        if not pipeline:
            s.sendall(hello)
        getattr(self, "_" + self.kind)(s, n, k)

    # -- the connection plans, after the ack

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
        self.expect_backend = (self.backends, n)

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
        self.expect_backend = (self.backends, n)


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
        self.expected = []       # (conn id, backend results, messages)
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
                if c.expect_backend is not None:
                    with self.lock:
                        self.expected.append((conn_id, c.what) + c.expect_backend)
            with self.lock:
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
    for conn_id, what, bs, n in r.expected:
        got = [b.results.get(conn_id) for b in bs]
        got = [g for g in got if g is not None]
        if got != [n]:
            STATS.fail(f"{what}: the backend verified {got} of {n} messages")
    return True


def check_daemon(d, base, label):
    """Sockets back to the start exactly, pipes within the pool, nothing else new."""
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
          f"{CLIENTS} client threads, forward splice and copy side by side")
    sys.stdout.flush()
    backends = [SoakBackend(i) for i in range(NBACKENDS)]
    routes = [(b.name, [f"net.tcp://+/Svc{b.index}", f"net.tcp://soak.example/Exact{b.index}",
                        f"net.tcp://*/Weak{b.index}"], b.addr) for b in backends]
    daemons = []
    try:
        for method in ("splice", "copy"):
            d = Daemon(routes, forward=method, log_level="info")
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
        if alive and rss_end - base[d][1] > RSS_TOLERANCE_KB:
            STATS.fail(f"daemon {d.forward_method}: RSS grew {rss_end - base[d][1]} kB "
                       f"(tolerance {RSS_TOLERANCE_KB} kB)")
        elif alive:
            checks_ok += 1

    # ------------------------------------------------------------ report
    c = STATS.count
    print(f"soak: {rounds} rounds, {counter[0]} connections opened")
    print(f"soak: connections served: {c.get('served', 0)} (splice "
          f"{c.get('served, forward splice', 0)}, copy {c.get('served, forward copy', 0)})")
    kinds = ", ".join(f"{k}={c.get('kind ' + k, 0)}" for k in KINDS[1:] + ["backend_restart"])
    print(f"soak: faults injected: {kinds}")
    print(f"soak: fault records checked: EndpointNotFound={c.get('faulted EndpointNotFound', 0)}, "
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
              f"(tolerance +{RSS_TOLERANCE_KB} kB)")
    if STATS.corrupted:
        STATS.fail(f"{STATS.corrupted} corrupted bytes")
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
    sys.exit(main())
