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
reply, End both ways, close."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import FORWARD_METHODS, SLOW, run_tests, wait_for  # noqa: E402
from test_pool import client_session, daemon, service  # noqa: E402
from test_sessions import Reader  # noqa: E402

SESSIONS = 30


def traced(pid):
    """Every thread of pid is under a tracer."""
    base = f"/proc/{pid}/task"
    for tid in os.listdir(base):
        with open(f"{base}/{tid}/status") as f:
            if any(ln.startswith("TracerPid:") and ln.split()[1] == "0" for ln in f):
                return False
    return True


def strace_counts(path, name):
    """calls and errors of one system call in strace -c's summary."""
    with open(path) as f:
        for line in f:
            p = line.split()
            if p and p[-1] == name:
                # % time, seconds, usecs/call, calls, [errors,] syscall
                return int(p[3]), int(p[4]) if len(p) == 6 else 0
    return 0, 0


def sessions_under_strace(forward, what):
    """SESSIONS sessions, each on its own client connection, on a daemon
    traced for the system calls in what: strace -c's summary file."""
    strace = shutil.which("strace")
    assert strace, "strace is not installed (scripts/install-test-deps)"
    svc = service()
    out = tempfile.NamedTemporaryFile(prefix="nettcpd-strace-", delete=False)
    out.close()
    with daemon(svc, extra=f"forward = {forward}\nbackend_pool_settle = 0") as d:
        # The first session dials the connection the others take from the
        # pool; it is not counted.
        s = d.connect()
        assert client_session(s, Reader(s), 2, b"warm") == "ok"
        s.close()
        base = d.sockets()
        wait_for(lambda: d.sockets() <= base, what="the first client closed")
        tracer = subprocess.Popen([strace, "-f", "-qq", "-c", "-e", f"trace={what}",
                                   "-o", out.name, "-p", str(d.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: traced(d.pid), what="strace attached")
            for i in range(SESSIONS):
                s = d.connect()
                got = client_session(s, Reader(s), 2, b"q%d" % i)
                assert got == "ok", (i, got)
                s.close()
                # The daemon has closed its side: the session is all
                # counted before the next begins.
                wait_for(lambda: d.sockets() <= base, what="the client closed")
        finally:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(10 * SLOW)
        assert svc.accepted == 1, f"{svc.accepted} backend connections, not 1 pooled"
    svc.close()
    return out.name


def test_no_epoll_registration_refused():
    """The event loop never asks epoll for a watch the kernel already has
    (EEXIST), and registers about one descriptor per session: the new
    client connection.  The pooled backend connection stays registered
    from session to session, and a direction whose End is delivered keeps
    its watch until the session ends."""
    for forward in FORWARD_METHODS:
        path = sessions_under_strace(forward, "epoll_ctl")
        try:
            calls, errors = strace_counts(path, "epoll_ctl")
        finally:
            os.unlink(path)
        print(f"  forward = {forward}: epoll_ctl {calls} calls, {errors} refused, "
              f"over {SESSIONS} sessions")
        assert errors == 0, f"forward = {forward}: {errors} epoll_ctl calls refused " \
            f"(EEXIST) in {SESSIONS} sessions, {calls} calls in all"
        assert calls <= SESSIONS + 2, f"forward = {forward}: {calls} epoll_ctl " \
            f"calls in {SESSIONS} sessions"


if __name__ == "__main__":
    run_tests(globals())
