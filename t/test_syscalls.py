#!/usr/bin/env python3
"""What a session costs nettcpd in system calls, counted by strace on the
real daemon: the event loop asks the kernel for no watch it already has.

libev keeps a descriptor registered with epoll when its watchers stop and
registers it again with EPOLL_CTL_ADD, which the kernel refuses as EEXIST,
when a watcher starts after a poll in between, or on a descriptor given
anew with ev_io_set.  Each refusal is a system call for nothing, and this
machine pays most of its time in the transitions themselves.  The sessions
here are the connection-rate workload of `make bench`: a new client
connection per session, a pooled backend connection, one request and
reply, End both ways, close.

A request and its reply on a long-lived session wake the daemon once on
each side; a read that only finds the socket empty is a call for nothing
too, clear or inside TLS."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (FORWARD_METHODS, SLOW, preamble, recv_exact,  # noqa: E402
                          run_tests, sized_envelope, wait_for)
from test_pool import client_session, daemon, service  # noqa: E402
from test_sessions import Reader  # noqa: E402
from test_tls import daemon_with, make_pki, tls_route, upgrade  # noqa: E402

SESSIONS = 30
REQUESTS = 60


def traced(pid):
    """Every thread of pid is under a tracer."""
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        with open(f"{base}/{tid}/status") as f:
            if any(ln.startswith("TracerPid:") and ln.split()[1] == "0" for ln in f):
                return False
    return True


class Strace:
    """strace -c on a running daemon, for the system calls in what, from
    the moment every thread is attached until stop(); then counts()."""

    def __init__(self, d, what):
        strace = shutil.which("strace")
        assert strace, "strace is not installed (scripts/install-test-deps)"
        out = tempfile.NamedTemporaryFile(prefix="nettcpd-strace-", delete=False)
        out.close()
        self.path = out.name
        self.proc = subprocess.Popen([strace, "-f", "-qq", "-c", "-e", f"trace={what}",
                                      "-o", self.path, "-p", str(d.pid)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        # Attaching needs ptrace to be allowed (Yama's ptrace_scope 0, or
        # CAP_SYS_PTRACE): a refusal is said, not waited out.
        wait_for(lambda: traced(d.pid) or self.proc.poll() is not None,
                 what="strace attached")
        assert self.proc.poll() is None, f"strace -p failed: {self.proc.stderr.read()}"

    def stop(self):
        """The summary: {syscall: (calls, errors)}."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(10 * SLOW)
        out = {}
        try:
            with open(self.path) as f:
                for line in f:
                    p = line.split()
                    # % time, seconds, usecs/call, calls, [errors,] syscall
                    if len(p) in (5, 6) and p[3].isdigit() and p[-1] != "total":
                        out[p[-1]] = (int(p[3]), int(p[4]) if len(p) == 6 else 0)
        finally:
            os.unlink(self.path)
        return out


def sessions_under_strace(forward, what):
    """SESSIONS sessions, each on its own client connection, on a daemon
    traced for the system calls in what: their counts."""
    svc = service()
    with daemon(svc, extra=f"forward = {forward}\nbackend_pool_settle = 0") as d:
        # The first session dials the connection the others take from the
        # pool; it is not counted.
        s = d.connect()
        assert client_session(s, Reader(s), 2, b"warm") == "ok"
        s.close()
        base = d.sockets()
        wait_for(lambda: d.sockets() <= base, what="the first client closed")
        tracer = Strace(d, what)
        try:
            for i in range(SESSIONS):
                s = d.connect()
                got = client_session(s, Reader(s), 2, b"q%d" % i)
                assert got == "ok", (i, got)
                s.close()
                # The daemon has closed its side: the session is all
                # counted before the next begins.
                wait_for(lambda: d.sockets() <= base, what="the client closed")
        finally:
            counts = tracer.stop()
        assert svc.accepted == 1, f"{svc.accepted} backend connections, not 1 pooled"
    svc.close()
    return counts


def test_no_epoll_registration_refused():
    """The event loop never asks epoll for a watch the kernel already has
    (EEXIST), and registers about one descriptor per session: the new
    client connection.  The pooled backend connection stays registered
    from session to session, and a direction whose End is delivered keeps
    its watch until the session ends.

    forward = uring receives on the ring while forwarding, so its
    sockets have no watcher then, and libev leaves their registration in
    the kernel until epoll reports bytes for one (it removes it then,
    EPOLL_CTL_DEL).  The pool's watcher, started again at the session's
    end, adds the backend connection back (EPOLL_CTL_ADD, which the kernel
    refuses when no removal came first).  That is two calls a session at
    most, one of them refused at most."""
    for forward in FORWARD_METHODS:
        calls, errors = sessions_under_strace(forward, "epoll_ctl").get("epoll_ctl", (0, 0))
        print(f"  forward = {forward}: epoll_ctl {calls} calls, {errors} refused, "
              f"over {SESSIONS} sessions")
        rewatch = SESSIONS if forward == "uring" else 0
        assert errors <= rewatch, f"forward = {forward}: {errors} epoll_ctl " \
            f"calls refused (EEXIST) in {SESSIONS} sessions, {calls} calls in all"
        assert calls <= SESSIONS + 2 + 2 * rewatch, f"forward = {forward}: " \
            f"{calls} epoll_ctl calls in {SESSIONS} sessions"


def requests_under_strace(d, sock, send, recv):
    """REQUESTS requests and replies on one session (the preamble Ack
    already read), the daemon traced for its reads: the reads that found
    the socket empty, and the reads in all."""
    r = Reader(sock) if recv is None else None
    tracer = Strace(d, "read,recvfrom,recvmsg")
    try:
        for i in range(REQUESTS):
            payload = b"request %d" % i
            send(sized_envelope(payload))
            want = sized_envelope(b"S:" + payload)
            got = r.take(len(want)) if r is not None else recv(len(want))
            assert got == want, (i, got)
    finally:
        counts = tracer.stop()
    return (sum(e for c, e in counts.values()), sum(c for c, e in counts.values()))


def test_request_reply_reads_no_empty_socket():
    """Each request and each reply is read once, clear or inside TLS: the
    daemon does not read a socket again after a read that took all of a
    short message (the client waits for its reply, nothing more is there),
    and the wakeup that follows, if bytes do come, costs nothing extra."""
    svc = service()
    with daemon(svc) as d:
        s = d.connect()
        s.sendall(preamble("net.tcp://h/S"))
        assert recv_exact(s, 1) == b"\x0b"
        empty, reads = requests_under_strace(d, s, s.sendall, None)
        s.close()
    print(f"  clear: {reads} reads, {empty} found nothing, {REQUESTS} requests")
    assert empty <= REQUESTS // 10, f"clear: {empty} reads of {reads} found nothing"
    with daemon_with(tls_route("secure", "net.tcp://+/Secure", svc.addr)) as d:
        t = upgrade(d, "net.tcp://localhost/Secure")
        assert recv_exact(t, 1) == b"\x0b"

        empty, reads = requests_under_strace(d, t, t.sendall, lambda n: recv_exact(t, n))
        t.close()
    svc.close()
    print(f"  TLS: {reads} reads, {empty} found nothing, {REQUESTS} requests")
    assert empty <= REQUESTS // 10, f"TLS: {empty} reads of {reads} found nothing " \
        f"in {REQUESTS} requests"


def uring_runs(d):
    """Whether the daemon's worker receives through io_uring; where the
    build or the kernel has none, a notice says so (forward = uring then
    runs as splice, which the other tests cover)."""
    said = ("sending through io_uring", "this worker forwards by splice")
    wait_for(lambda: any(s in d.log() for s in said), what="the worker's forward line")
    log = d.log()
    if said[0] in log:
        return True
    print("NOTICE: forward = uring not run here: " + [
        ln for ln in log.splitlines() if said[1] in ln][0])
    return False


def test_uring_receives_on_the_ring():
    """forward = uring: requests and replies are received and sent by the
    ring, not by recv() and send(): on one session the daemon makes almost
    no read or send of its own, and two io_uring_enter at most per message
    (one submits its send; once that is done, the next submits the receive
    that waits for the reply).  With more connections one serves many."""
    svc = service()
    with daemon(svc, extra="forward = uring") as d:
        if not uring_runs(d):
            svc.close()
            return
        s = d.connect()
        s.sendall(preamble("net.tcp://h/S"))
        assert recv_exact(s, 1) == b"\x0b"
        r = Reader(s)
        tracer = Strace(d, "read,recvfrom,recvmsg,io_uring_enter,sendto,sendmsg")
        try:
            for i in range(REQUESTS):
                payload = b"request %d" % i
                s.sendall(sized_envelope(payload))
                want = sized_envelope(b"S:" + payload)
                assert r.take(len(want)) == want, i
        finally:
            counts = tracer.stop()
        s.close()
    svc.close()
    calls = {k: c for k, (c, e) in counts.items()}
    reads = sum(calls.get(k, 0) for k in ("read", "recvfrom", "recvmsg"))
    enters = calls.get("io_uring_enter", 0)
    sends = calls.get("sendto", 0) + calls.get("sendmsg", 0)
    print(f"  forward = uring: {REQUESTS} requests: {reads} reads, {enters} "
          f"io_uring_enter, {sends} sends")
    assert reads <= REQUESTS // 10, f"{reads} reads of its own in {REQUESTS} requests"
    assert sends <= REQUESTS // 10, f"{sends} sends of its own in {REQUESTS} requests"
    assert 0 < enters <= 4 * REQUESTS + 4, f"{enters} io_uring_enter in {REQUESTS} requests"


if __name__ == "__main__":
    make_pki()
    run_tests(globals())
