"""The backend pool against a misbehaving service: bytes a service sends
after its End reach no client of another session, a pooled connection that
fails under the next preamble is redialled in the session's own mode, and
a route can keep its connections out of the pool.  Real daemon, real
sockets."""

import os
import random
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, Backend, Daemon, mbint, preamble,  # noqa: E402
                          run_tests, sized_envelope)
from test_sessions import Reader  # noqa: E402

STRAY = b"STRAY:"


def settle():
    """Let a pooled connection's settle period (10 ms by default) pass, so
    the next session may take it."""
    time.sleep(0.05)


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
    """One worker (the pool is per worker), one route to backend; every
    line about a client logged (the tests count them)."""
    cfg = ("[global]\nlisten = 127.0.0.1:{port}\nworkers = 1\n"
           "log_level = debug\nlog_client_lines = 0\n" + extra + "\n"
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


def stray_race(settle_period):
    """The service sends 0B + an envelope of the session it just ended,
    0-4 ms after its End.  Two clients take turns over the pool for 1,000
    sessions: none may receive the other's envelope (or any stray 0B).
    Returns the counts: ok, reset (the proxy found the connection dirty
    after the Ack went to the client, and reset it), crossed."""
    def stray(c, lock, last):
        def send():
            try:
                with lock:
                    c.sendall(b"\x0b" + sized_envelope(STRAY + last))
            except OSError:
                pass
        threading.Timer(random.uniform(0, 0.004), send).start()

    svc = service(stray_after_end=stray)
    d = daemon(svc, extra=f"backend_pool_settle = {settle_period}")
    counts = {"ok": 0, "reset": 0, "crossed": 0}
    crossings = []
    with d:
        clients = [None, None]
        for i in range(1000):
            k = i % 2
            if clients[k] is None:
                s = d.connect(timeout=10 * SLOW)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                clients[k] = (s, Reader(s))
            s, r = clients[k]
            payload = b"c%d.s%d" % (k, i)
            try:
                got = client_session(s, r, 2, payload)
            except (ConnectionResetError, BrokenPipeError):
                got = "reset"
            if got == "ok":
                counts["ok"] += 1
                continue
            if got in ("reset", "closed before the ack",
                       "closed before the reply") and STRAY not in r.buf:
                counts["reset"] += 1
            else:
                counts["crossed"] += 1
                crossings.append((i, got))
            s.close()
            clients[k] = None
        for c in clients:
            if c is not None:
                c[0].close()
        log = d.log()
    svc.close()
    print(f"  backend_pool_settle = {settle_period}: 1000 alternating "
          f"sessions: {counts['ok']} ok, {counts['reset']} reset, "
          f"{counts['crossed']} crossed; {svc.accepted} backend connections, "
          f"{log.count('redialling')} redials, "
          f"{log.count('another session')} resets by the proxy")
    assert counts["crossed"] == 0, crossings[:5]
    # Every reset is the proxy's own, said in its log.
    assert counts["reset"] <= log.count("another session's bytes, reset"), counts
    return counts


def test_stray_bytes_after_end_reach_no_other_client():
    """With the default settle period the stray bytes close the connection
    in the pool: no session is reset."""
    counts = stray_race("10ms")
    assert counts["reset"] <= 10, counts


def test_stray_bytes_after_end_without_settle_period():
    """Without it every connection is reused at once and the stray bytes
    meet the next session: the Ack check redials or resets, nothing
    crosses."""
    stray_race("0")


def redial_then_fin(mode):
    svc = service(drop_second=True)
    with daemon(svc) as d:
        s = d.connect()
        assert client_session(s, Reader(s), mode, b"first") == "ok"
        d.wait_log("backend connection pooled")
        s.close()
        settle()
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


def test_ack_with_bytes_behind_it_on_a_reused_connection_is_redialled():
    """On a reused connection the service answers the preamble with 0B and
    an envelope in one write (the envelope is another session's): the 0B
    has not reached the client, so the proxy redials and the client gets a
    clean session from a new connection."""
    def answer(c, n):
        if n < 2:
            return False
        c.sendall(b"\x0b" + sized_envelope(STRAY + b"old"))
        return True
    svc = service(answer=answer)
    with daemon(svc) as d:
        for i in range(3):
            s = d.connect()
            assert client_session(s, Reader(s), 2, b"p%d" % i) == "ok"
            s.close()
            settle()
        d.wait_log("bytes behind its Ack, redialling")
    svc.close()


def test_client_sending_its_envelope_with_the_preamble_gets_a_new_connection():
    """A client that sends its first envelope and End with its preamble,
    without waiting for the Ack (legal framing, found by fuzz_sessions):
    an Ack with an envelope behind it may then be the service's whole
    answer, or the last session's stray Ack and envelope, which no check
    can tell apart.  Here the service sends such a stray as the second
    preamble on a connection comes.  The session takes a new connection
    instead of a pooled one, and the stray reaches nobody."""
    def answer(c, n):
        if n < 2:
            return False
        c.sendall(b"\x0b" + sized_envelope(STRAY + b"old"))
        return True
    svc = service(answer=answer)
    with daemon(svc) as d:
        s = d.connect()
        assert client_session(s, Reader(s), 2, b"first") == "ok"
        d.wait_log("backend connection pooled")
        s.close()
        settle()
        s = d.connect()
        r = Reader(s)
        s.sendall(preamble("net.tcp://h/S", mode=2) + sized_envelope(b"p") +
                  b"\x07")
        got = [r.take(1)]
        while got[-1] not in (None, ("end", None)):
            got.append(read_session(r))
        assert got == [b"\x0b", ("env", b"S:p"), ("end", None)], got
        assert svc.accepted == 2, svc.accepted
        s.close()
    svc.close()


def test_bytes_after_the_ack_before_the_client_spoke_reset_it():
    """On a reused connection the service sends an envelope after the Ack,
    before the client's first envelope went to it: nobody asked for it, it
    is another session's.  The client, which already has the Ack, is reset
    and never sees the envelope."""
    def answer(c, n):
        if n < 2:
            return False
        c.sendall(b"\x0b")
        time.sleep(0.05)
        c.sendall(sized_envelope(STRAY + b"old"))
        return True
    svc = service(answer=answer)
    with daemon(svc) as d:
        s = d.connect()
        assert client_session(s, Reader(s), 2, b"one") == "ok"
        s.close()
        d.wait_log("backend connection pooled")
        settle()
        s = d.connect()
        r = Reader(s)
        try:
            got = client_session(s, r, 2, b"two", pause=0.5 * SLOW)
        except (ConnectionResetError, BrokenPipeError):
            got = "reset"
        assert got in ("reset", "closed before the reply"), got
        assert STRAY not in bytes(r.buf)
        d.wait_log("before the client's first envelope")
        s.close()
    svc.close()


def test_second_ack_mid_session_resets_the_client():
    """A 0B inside a duplex session answers a preamble this session never
    sent: the client is reset and gets neither it nor what follows it."""
    def answer(c, n):
        c.sendall(b"\x0b\x0b" + sized_envelope(STRAY + b"old")
                  if n == 1 else b"\x0b")
        return True
    svc = service(answer=answer)
    with daemon(svc, extra="backend_pool = 0") as d:
        s = d.connect()
        r = Reader(s)
        try:
            got = client_session(s, r, 2, b"x", pause=0.2)
        except (ConnectionResetError, BrokenPipeError):
            got = "reset"
        assert got in ("reset", "closed before the reply"), got
        assert STRAY not in bytes(r.buf)
        d.wait_log("second Ack")
        s.close()
    svc.close()


def test_service_out_of_the_protocol_reaches_only_its_own_client():
    """The case fuzz_sessions flagged (its own service answered a singleton
    session with 05 00 00, an empty envelope and then a 00 that no session
    holds): a service out of the protocol is passed on unread, End and
    stray envelope after it included, but only to the client whose session
    that connection carries.  The connection never goes to the pool, even
    with no settle period: the next client's session gets a new one."""
    conns = []

    def handler(c, backend):
        with backend.lock:
            conns.append(c)
            first = len(conns) == 1
        if not first:
            return mode_service()(c, backend)
        r = Reader(c)
        if r.preamble() is None:
            return
        c.sendall(b"\x0b")
        if read_session(r) is None or read_session(r) != ("end", None):
            return
        c.sendall(b"\x05\x00\x00\x07" + sized_envelope(STRAY + b"own"))
        r.take(1)   # until the proxy closes it
    svc = Backend(handler=handler, name="S")
    svc.sessions = []
    own = b"\x0b\x05\x00\x00\x07" + sized_envelope(STRAY + b"own")
    with daemon(svc, extra="backend_pool_settle = 0") as d:
        a = d.connect()
        a.sendall(preamble("net.tcp://h/S", mode=1) + unsized_envelope(b"a") +
                  b"\x07")
        got = b""
        while len(got) < len(own):
            chunk = a.recv(1 << 16)
            if not chunk:
                break
            got += chunk
        assert got == own, got
        d.wait_log("service sent record 0x00 out of the session")
        # a stays open: its backend connection is live, not pooled.
        b = d.connect()
        r = Reader(b)
        assert client_session(b, r, 2, b"b") == "ok"
        assert STRAY not in bytes(r.buf)
        # Pooled, the first connection would have been taken at once.
        assert svc.accepted == 2, svc.accepted
        a.close()
        b.close()
    svc.close()


def test_pool_off_per_route_applied_by_reload():
    """pool = off: each session of the route dials and closes its own
    backend connection; a reload that turns it on pools the next one."""
    svc = service()
    # no settle period: each session takes the connection the last left
    d = daemon(svc, extra="backend_pool_settle = 0", route_extra="pool = off")
    with d:
        for i in range(3):
            s = d.connect()
            assert client_session(s, Reader(s), 2, b"p%d" % i) == "ok"
            s.close()
        assert svc.accepted == 3, svc.accepted
        assert "pooled" not in d.log()
        with open(d.config) as f:
            text = f.read()
        with open(d.config, "w") as f:
            f.write(text.replace("pool = off", "pool = on"))
        os.kill(d.pid, signal.SIGHUP)
        d.wait_log("reloaded")
        before = svc.accepted
        for i in range(3):
            s = d.connect()
            assert client_session(s, Reader(s), 2, b"q%d" % i) == "ok"
            s.close()
        assert svc.accepted == before + 1, (before, svc.accepted)
    svc.close()


if __name__ == "__main__":
    run_tests(globals())
