"""The BPF sockmap fast path (fastpath = auto): a followed session's
envelopes move in the kernel, End and everything else in user space, with
every guarantee of the splice path kept.  Each scenario runs with the fast
path on and forced off (fastpath = off), and the daemon's debug log says
how many bytes the kernel carried: on, it must have carried the
envelopes; off, none.  As root (CI) the program must load; elsewhere the
log must say why it did not, and the scenarios check the splice path."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, preamble, recv_exact, run_tests,  # noqa: E402
                          sized_envelope, wait_for)
from test_sessions import Reader, daemon, service, session  # noqa: E402

MODES = ["auto", "off"]


def privileged():
    """CAP_SYS_ADMIN, or CAP_BPF and CAP_NET_ADMIN: the program loads."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                eff = int(line.split()[1], 16)
                return bool(eff >> 21 & 1) or (bool(eff >> 39 & 1) and bool(eff >> 12 & 1))
    return False


def fast_daemon(mode, routes, extra=""):
    return daemon(routes, f"fastpath = {mode}\n" + extra)


def carried(d):
    """Bytes the kernel carried, up and down, summed over the log's lines."""
    up = down = 0
    for line in d.log().splitlines():
        if "the kernel carried" in line:
            words = line.split("the kernel carried ")[1].split()
            up += int(words[0])
            down += int(words[3])
    return up, down


def expect_path(d, mode):
    """The start-up line says which path runs, and why."""
    if mode == "off":
        d.wait_log("fast path: off (fastpath = off)")
        return False
    if privileged():
        d.wait_log("fast path: on (BPF sockmap verdict)")
        return True
    d.wait_log("fast path: not available")
    return False


def test_sessions_carried_by_the_kernel():
    for mode in MODES:
        a = service("A")
        with fast_daemon(mode, [("a", "net.tcp://+/A", a.addr)]) as d:
            fast = expect_path(d, mode)
            s = d.connect()
            r = Reader(s)
            payloads = [os.urandom(n) for n in (1, 100, 5000, 70000, 300000)]
            for i in range(3):
                assert session(s, "net.tcp://h/A", payloads, reader=r) == \
                    [b"A:" + p for p in payloads]
            s.close()
            want = sum(len(sized_envelope(p)) for p in payloads)
            if fast:
                # every session's envelopes but the first of each (the
                # direction is armed once user space has seen it at a
                # boundary) went through the kernel
                wait_for(lambda: carried(d)[0] >= 2 * want, what="kernel bytes")
                up, down = carried(d)
                assert down >= 2 * want, (up, down)
            else:
                assert carried(d) == (0, 0)
            assert a.accepted == 1, a.accepted
        a.close()


if __name__ == "__main__":
    run_tests(globals())
