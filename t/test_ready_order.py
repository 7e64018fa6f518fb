"""The order a worker serves ready sockets in: the kernel's.  libev invokes
one loop iteration's ready watchers newest first, which made the socket
reported first wait for all the others (README, Performance: the tail of
request/response); nettcpd queues them and serves them oldest first.  The
daemon is stopped while the sockets become ready one by one, so that one
epoll_wait reports them all, in a known order, when it goes on."""

import os
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, Backend, Daemon, FORWARD_METHODS, preamble,  # noqa: E402
                          read_preamble, recv_exact, reset, run_tests,
                          sized_envelope, wait_for)

CLIENTS = 8
# Linux's SO_TIMESTAMPNS (asm-generic/socket.h), which Python 3.11 lacks
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def stamping_handler(c, backend):
    """Acknowledge the preamble, then record the kernel's receive time of
    the first bytes after it, and the client number they carry."""
    read_preamble(c)
    c.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    c.sendall(b"\x0b")
    data, anc, _, _ = c.recvmsg(256, socket.CMSG_SPACE(16))
    stamp = None
    for level, kind, value in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", value[:16])
            stamp = sec * 10**9 + nsec
    with backend.lock:
        backend.received.append((stamp, data))
    while c.recv(1 << 16):
        pass


def acked_clients(d, n):
    clients = []
    for _ in range(n):
        s = d.connect()
        s.sendall(preamble("net.tcp://h/svc"))
        assert recv_exact(s, 1) == b"\x0b"
        clients.append(s)
    return clients


def stopped(d):
    """Stop the daemon (its sockets keep receiving) until the block ends."""
    class Stop:
        def __enter__(self):
            os.kill(d.pid, signal.SIGSTOP)
            wait_for(lambda: state(d.pid) == "T", what="daemon stopped")

        def __exit__(self, *exc):
            os.kill(d.pid, signal.SIGCONT)
    return Stop()


def state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_ready_sockets_are_served_in_the_kernels_order():
    for forward in FORWARD_METHODS:
        svc = Backend(stamping_handler)
        d = Daemon([("svc", "net.tcp://h/svc", svc.addr)], forward=forward,
                   extra_global="workers = 1")
        with d:
            clients = acked_clients(d, CLIENTS)
            with stopped(d):
                for i, s in enumerate(clients):
                    s.sendall(sized_envelope(b"client %d" % i))
                    time.sleep(0.01)
            wait_for(lambda: len(svc.received) == CLIENTS, timeout=10,
                     what="every envelope at the service")
            order = [data for _, data in sorted(svc.received)]
            want = [sized_envelope(b"client %d" % i) for i in range(CLIENTS)]
            assert order == want, (forward, order)
            for s in clients:
                s.close()
        svc.close()


def reply_then_hold(c, backend):
    """Acknowledge the preamble; at the test's word, send a reply and keep
    the connection open."""
    read_preamble(c)
    c.sendall(b"\x0b")
    with backend.lock:
        backend.received.append(c)
    backend.go.wait(30 * SLOW)
    try:
        c.sendall(sized_envelope(b"reply"))
        while c.recv(1 << 16):
            pass
    except OSError:
        pass


def test_connection_closed_by_its_first_ready_socket_skips_the_second():
    """A client resets while its service's reply waits: one iteration finds
    both sockets ready.  Whichever is served first, the connection closes
    once, nothing is served for it after it is freed (the sanitizer and
    valgrind stages run this), and the daemon goes on serving."""
    for forward in FORWARD_METHODS:
        for client_first in (True, False):
            svc = Backend(reply_then_hold)
            svc.go = threading.Event()
            d = Daemon([("svc", "net.tcp://h/svc", svc.addr)], forward=forward,
                       extra_global="workers = 1")
            with d:
                base = d.sockets()
                clients = acked_clients(d, CLIENTS)
                wait_for(lambda: len(svc.received) == CLIENTS,
                         what="every session at the service")
                with stopped(d):
                    if client_first:
                        for s in clients:
                            reset(s)
                        time.sleep(0.05)
                        svc.go.set()
                        time.sleep(0.2)
                    else:
                        svc.go.set()
                        time.sleep(0.2)
                        for s in clients:
                            reset(s)
                d.assert_no_leak(base, timeout=10)
                # still serving: a new client's session goes through
                s = acked_clients(d, 1)[0]
                s.sendall(sized_envelope(b"after"))
                assert recv_exact(s, len(sized_envelope(b"reply"))) == \
                    sized_envelope(b"reply")
                s.close()
            svc.close()


if __name__ == "__main__":
    run_tests(globals())
