"""Slow-loris flood: 5,000 connections that each send one byte of a preamble
now and then must not delay a well-behaved client.

The slow clients run in a child process (this file with --slowloris), so
that their send loop and the latency measurement do not share an
interpreter lock.  A well-behaved client's routing latency is measured
from before connect() to the backend's 0x0B ack arriving through the
proxy; the median of the samples must be under 100 ms and the worst one
under 450 ms, less than one trickle period.

  * max_pending = 10000: all 5,000 slow clients stay pending (none is
    evicted, none times out), so the event loop itself must serve the fast
    client promptly;
  * the default max_pending = 100: the slow clients are evicted oldest
    first and reconnect at once, a storm of accepts and resets, and the fast
    client is still served.

The fast client dials from 127.0.0.2, the slow ones from 127.0.0.1: what
max_pending guarantees a client is that a source holding more preambles
gives way first (pending.c).  From the flooder's own address the fast
client could be out-aged: under the sanitizers a hundred reconnects can
come between its connect and the daemon's reading of its preamble, and
one was reset so (CI, stop 26).
"""

import json
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, Backend, Daemon, preamble, recv_exact,  # noqa: E402
                          run_tests, wait_for)

SLOW_CLIENTS = 5000
FAST_SAMPLES = 100
TRICKLE_PERIOD = 0.5               # each slow client sends a byte this often
# seconds, connect + preamble -> 0x0B.  The median says the fast client is
# served at once; the worst of the samples is allowed a scheduler hiccup on
# a loaded machine (a sanitizer build shares it with the 5,000 sockets), but
# stays under one trickle period: a fast client that waited behind the slow
# ones would wait for their bytes.
MEDIAN_BOUND = 0.100 * SLOW
WORST_BOUND = 0.9 * TRICKLE_PERIOD * SLOW
NOFILE = 16384


def raise_nofile():
    """Room for 5,000 sockets here, in the slow-loris child and in the
    daemon: both inherit this limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else max(NOFILE, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft >= 2 * SLOW_CLIENTS + 200, f"RLIMIT_NOFILE {soft} is too low"


# ------------------------------------------------------------ the slow side

def slow_connect(port):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(("127.0.0.1", port))
    return s


def slowloris(port, n, reconnect):
    """Child process: open n connections, then send each one more byte of a
    preamble whose Via is far too long to finish, every TRICKLE_PERIOD.
    Prints "ready" once all are connected; on EOF of stdin prints its
    counts as JSON and exits."""
    data = preamble("net.tcp://h/Slow/" + "x" * 2000)
    conns = []
    sel = selectors.DefaultSelector()
    for start in range(0, n, 250):
        batch = [slow_connect(port) for _ in range(min(250, n - start))]
        for s in batch:
            sel.register(s, selectors.EVENT_WRITE)
        waiting = set(batch)
        deadline = time.time() + 30
        while waiting and time.time() < deadline:
            for key, _ in sel.select(timeout=1):
                sel.unregister(key.fileobj)
                waiting.discard(key.fileobj)
        if waiting:
            print(f"error {len(waiting)} connections did not complete", flush=True)
            return 1
        for s in batch:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            # evicted already: the trickle loop reconnects it
            if err and not reconnect:
                print(f"error connect: {os.strerror(err)}", flush=True)
                return 1
            conns.append([s, 0])
    print(f"ready {len(conns)}", flush=True)

    stdin = selectors.DefaultSelector()
    stdin.register(sys.stdin, selectors.EVENT_READ)
    sent = resets = reconnects = 0
    chunk = 100
    while True:
        # spread over the period: each client keeps its own slow pace,
        # they do not all act at the same instant
        started = time.monotonic()
        for i, c in enumerate(conns):
            if i % chunk == 0 and i:
                pause = started + TRICKLE_PERIOD * i / len(conns) - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            s, pos = c
            try:
                sent += s.send(data[pos:pos + 1])
                c[1] = pos + 1
            except BlockingIOError:
                pass
            except OSError:
                resets += 1
                s.close()
                if reconnect:
                    c[0], c[1] = slow_connect(port), 0
                    reconnects += 1
                else:
                    c[0], c[1] = socket.socket(), 0   # stays dead: sends fail
        left = TRICKLE_PERIOD - (time.monotonic() - started)
        if stdin.select(timeout=max(0.0, left)):
            break
    print(json.dumps({"connections": len(conns), "bytes": sent, "resets": resets,
                      "reconnects": reconnects}), flush=True)
    return 0


# ------------------------------------------------------------ the fast side

# connect() itself failing with ECONNRESET, under the storm of slow clients
# reconnecting (when the fast client shared their address): seen about
# once in five sanitizer runs, never without the sanitizers, its cause not
# pinned down (nettcpd resets only preambles it has chosen, oldest of the
# source first, and a newcomer is the newest).  A well-behaved client
# dials again, once per run at most; a reset after the handshake still
# fails the test.
CONNECT_RESETS = []
# Not the slow clients' address (module docstring).
FAST_SOURCE = ("127.0.0.2", 0)


def connect_once_more(port):
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW,
                                        source_address=FAST_SOURCE)
    except ConnectionResetError:
        CONNECT_RESETS.append(1)
        return socket.create_connection(("127.0.0.1", port), timeout=5 * SLOW,
                                        source_address=FAST_SOURCE)


def route_latency(d):
    """Seconds from connect() to the backend's ack, through the proxy."""
    t0 = time.perf_counter()
    s = connect_once_more(d.port)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(preamble("net.tcp://h/Fast/Op"))
        got = recv_exact(s, 5)
        t1 = time.perf_counter()
    finally:
        s.close()
    assert got == b"\x0bfast", got
    return t1 - t0


def summary(samples):
    ms = sorted(x * 1000 for x in samples)
    p50 = ms[len(ms) // 2]
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, p100 {ms[-1]:.2f} ms ({len(ms)} clients)"


def flood(max_pending, evict):
    raise_nofile()
    CONNECT_RESETS.clear()
    b = Backend(name="fast")
    extra = (f"max_pending = {max_pending}\n" if max_pending else "") + \
        "preamble_timeout = 10m\nmax_connections = 20000"
    routes = [("fast", "net.tcp://+/Fast", b.addr), ("slow", "net.tcp://+/Slow", b.addr)]
    with Daemon(routes, extra_global=extra, log_level="info") as d:
        base = d.sockets()
        quiet = [route_latency(d) for _ in range(10)]
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--slowloris",
                                  str(d.port), str(SLOW_CLIENTS), "1" if evict else "0"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            line = child.stdout.readline().strip()
            assert line == f"ready {SLOW_CLIENTS}", line
            if not evict:
                wait_for(lambda: d.sockets() >= base + SLOW_CLIENTS, 30,
                         what=f"{SLOW_CLIENTS} slow connections held by the daemon")
            time.sleep(2 * TRICKLE_PERIOD)      # the trickle is under way
            loaded = []
            for i in range(FAST_SAMPLES):
                try:
                    loaded.append(route_latency(d))
                except ConnectionResetError:
                    raise AssertionError(f"well-behaved client {i} was reset, not routed")
                time.sleep(0.02)
            held = d.sockets() - base
        finally:
            child.stdin.close()
            out = child.stdout.readline()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        counts = json.loads(out)
        print(f"  max_pending {max_pending or 'default (100)'}: quiet: {summary(quiet)}")
        print(f"  max_pending {max_pending or 'default (100)'}: under {SLOW_CLIENTS} "
              f"slow-loris clients: {summary(loaded)}")
        print(f"  slow side: {counts['bytes']} bytes trickled, {counts['resets']} resets, "
              f"{counts['reconnects']} reconnects; daemon held {held} sockets")
        evictions = d.log().count("max_pending (")
        print(f"  daemon logged {evictions} evictions; {len(CONNECT_RESETS)} "
              "connects reset in the handshake and dialled again")
        assert len(CONNECT_RESETS) <= 1, CONNECT_RESETS
        median = sorted(loaded)[len(loaded) // 2]
        assert median < MEDIAN_BOUND and max(loaded) < WORST_BOUND, \
            f"routing took {median * 1000:.1f} ms (median), {max(loaded) * 1000:.1f} ms " \
            f"(worst) under the flood: {summary(loaded)}"
        if evict:
            assert evictions > 0 and counts["resets"] > 0, "no slow client was evicted"
            # only max_pending connections can be waiting at once (split
            # between the workers), plus the ones a worker is accepting
            assert held <= max_pending_default() + 64 * workers(d), held
        else:
            assert evictions == 0 and counts["resets"] == 0, \
                f"{counts['resets']} slow clients were reset"
            assert held >= SLOW_CLIENTS, held
        d.assert_no_leak(base, timeout=30)
    b.close()


def max_pending_default():
    return 100


def workers(d):
    m = re.search(r"(\d+) workers", d.log())
    return int(m.group(1)) if m else 1


def test_burst_does_not_evict_a_client_whose_preamble_waits():
    """A burst of accepts fills max_pending while a well-behaved client's
    whole preamble already sits, unread, in its socket: that client must be
    routed, not evicted as "the oldest pending".  The daemon is stopped
    while the burst queues up, so every run takes the same path."""
    raise_nofile()
    b = Backend(name="fast")
    with Daemon([("fast", "net.tcp://+/Fast", b.addr)], log_level="info") as d:
        base = d.sockets()
        for _ in range(3):
            d.proc.send_signal(signal.SIGSTOP)
            try:
                fast = socket.create_connection(("127.0.0.1", d.port), timeout=5 * SLOW)
                fast.sendall(preamble("net.tcp://h/Fast/Op"))
                idle = [socket.create_connection(("127.0.0.1", d.port))
                        for _ in range(3 * max_pending_default())]
                # one byte each, or TCP_DEFER_ACCEPT keeps them from the
                # daemon altogether
                for s in idle:
                    s.sendall(b"\x00")
            finally:
                d.proc.send_signal(signal.SIGCONT)
            try:
                got = recv_exact(fast, 5)
            except ConnectionResetError:
                got = "reset"
            assert got == b"\x0bfast", f"the ready client was evicted: {got!r}"
            fast.close()
            # the burst did overflow max_pending (else this proved nothing);
            # the idle ones stay open until it has
            d.wait_log("max_pending (", timeout=10 * SLOW)
            for s in idle:
                s.close()
        d.assert_no_leak(base, timeout=10)
    b.close()


def test_slowloris_all_pending_fast_client_routed_at_once():
    flood(max_pending=10000, evict=False)


def test_slowloris_default_max_pending_evicts_and_fast_client_still_routed():
    flood(max_pending=None, evict=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--slowloris":
        sys.exit(slowloris(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"))
    run_tests(globals())
