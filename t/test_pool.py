"""The backend pool against a misbehaving service: bytes a service sends
after its End reach no client of another session, a pooled connection that
fails under the next preamble is redialled in the session's own mode, and
a route can keep its connections out of the pool.  Real daemon, real
sockets."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, Backend, Daemon, mbint, preamble,  # noqa: E402
                          run_tests, sized_envelope)
from test_sessions import Reader  # noqa: E402

def read_session(r):
    """The client's records of one session on a service, after the
    preamble: ("env", payload) for a Sized Envelope, ("unsized", bytes) for
    a singleton's Unsized Envelope, ("end", None); None at EOF."""
    t = r.take(1)
    if t is None:
        return None
    if t[0] == 0x06:
        return ("env", r.take(r.mbint()))
    if t[0] == 0x05:
        out = bytearray()
        while True:
            n = r.mbint()
            if n == 0:
                return ("unsized", bytes(out))
            out += r.take(n)
    if t[0] == 0x07:
        return ("end", None)
    return ("record", t.hex())


def unsized_envelope(payload):
    return b"\x05" + mbint(len(payload)) + payload + b"\x00"


def mode_service(drop_second=False, stray_after_end=None, answer=None):
    """A WCF-like service in the mode of each preamble: Ack, answer each
    envelope with one carrying "S:" + its payload, End for End, then the
    next preamble on the same connection.  drop_second: close a connection
    when its second preamble arrives, without answering.
    stray_after_end(c, lock, last): called after the End went out, on
    the handler's thread.  answer(c, n): replaces the Ack of the n-th
    preamble on a connection (1-based); returns True if it answered."""
    def handler(c, backend):
        # Each record goes out as it is written, as WCF's NoDelay sockets
        # send it; Nagle would hold an End behind an unacknowledged reply.
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        r = Reader(c)
        lock = threading.Lock()
        here = 0
        while True:
            pre = r.preamble()
            if pre is None:
                return
            here += 1
            if drop_second and here > 1:
                return
            mode = pre[4]
            with backend.lock:
                backend.sessions.append(mode)
            if answer is None or not answer(c, here):
                with lock:
                    c.sendall(b"\x0b")
            last = b""
            while True:
                rec = read_session(r)
                if rec is None:
                    return
                kind, payload = rec
                if kind == "record":
                    return
                if kind == "env":
                    last = payload
                    with lock:
                        c.sendall(sized_envelope(b"S:" + payload))
                elif kind == "unsized":
                    last = payload
                    with lock:
                        c.sendall(unsized_envelope(b"S:" + payload))
                else:
                    with lock:
                        c.sendall(b"\x07")
                    if stray_after_end is not None:
                        stray_after_end(c, lock, last)
                    break
    return handler


def service(**kw):
    b = Backend(handler=mode_service(**kw), name="S")
    b.sessions = []
    return b


def daemon(backend, extra="", route_extra="", **kw):
    """One worker (the pool is per worker), one route to backend."""
    cfg = ("[global]\nlisten = 127.0.0.1:{port}\nworkers = 1\n"
           "log_level = debug\n" + extra + "\n"
           "[s]\nvia = net.tcp://+/S\nbackend = " + backend.addr + "\n" +
           route_extra + "\n")
    d = Daemon(raw_config="")
    d.listen = f"127.0.0.1:{d.port}"
    with open(d.config, "w") as f:
        f.write(cfg.format(port=d.port))
    return d


def client_session(s, r, mode, payload, pause=0.0):
    """One session in mode on s: returns what came back ("ok" or a
    description of the first record out of place)."""
    s.sendall(preamble("net.tcp://h/S", mode=mode))
    t = r.take(1)
    if t is None:
        return "closed before the ack"
    if t != b"\x0b":
        return f"record {t.hex()} instead of the ack"
    time.sleep(pause)
    if mode == 2:
        s.sendall(sized_envelope(payload) + b"\x07")
        want = ("env", b"S:" + payload)
    else:
        s.sendall(unsized_envelope(payload) + b"\x07")
        want = ("unsized", b"S:" + payload)
    t = r.take(1)
    if t is None:
        return "closed before the reply"
    r.buf[0:0] = t
    if t not in (b"\x05", b"\x06"):
        return f"record {t.hex()} instead of the reply"
    got = read_session(r)
    if got != want:
        return f"reply {got!r}, not {want!r}"
    got = read_session(r)
    if got != ("end", None):
        return f"{got!r} instead of the End"
    return "ok"


def redial_then_fin(mode):
    svc = service(drop_second=True)
    with daemon(svc) as d:
        s = d.connect()
        assert client_session(s, Reader(s), mode, b"first") == "ok"
        d.wait_log("backend connection pooled")
        s.close()
        s = d.connect()
        r = Reader(s)
        assert client_session(s, r, mode, b"second") == "ok"
        d.wait_log("was closed, redialling")
        # The session is over: the client's FIN closes its connection at
        # once, though the service keeps its own open.
        s.shutdown(socket.SHUT_WR)
        s.settimeout(3 * SLOW)
        started = time.time()
        assert s.recv(1) == b"", "the proxy sent bytes after the session"
        assert time.time() - started < 2 * SLOW
        s.close()
        assert svc.accepted == 2, svc.accepted
        assert svc.sessions == [mode, mode], svc.sessions
    svc.close()


def test_singleton_session_after_a_pooled_redial():
    redial_then_fin(1)


def test_duplex_session_after_a_pooled_redial():
    redial_then_fin(2)


if __name__ == "__main__":
    run_tests(globals())
