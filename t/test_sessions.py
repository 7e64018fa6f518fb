"""Following duplex sessions: a client connection that starts a new session
after End both ways is routed afresh, and the backend connection is kept
between sessions, as a WCF service keeps it (ConnectionDemuxer.
ReuseConnection), through the real daemon."""

import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, Backend, Daemon, FORWARD_METHODS, fault_record,  # noqa: E402
                          preamble, recv_exact, run_tests, sized_envelope,
                          wait_for)


class Reader:
    """Buffered reads of framing records from a socket."""

    def __init__(self, s):
        self.s = s
        self.buf = bytearray()

    def fill(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def take(self, n):
        if not self.fill(n):
            return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def mbint(self):
        v = shift = 0
        while True:
            b = self.take(1)[0]
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v

    def record(self):
        """(type, payload) of the next record; payload only for 06 and 08."""
        t = self.take(1)
        if t is None:
            return None, None
        if t[0] in (0x06, 0x08):
            return t[0], self.take(self.mbint())
        return t[0], None

    def preamble(self):
        """The bytes of a preamble through Preamble End, None at EOF."""
        out = bytearray()
        while True:
            t = self.take(1)
            if t is None:
                return None
            out += t
            if t[0] == 0x00:
                out += self.take(2)
            elif t[0] in (0x01, 0x03):
                out += self.take(1)
            elif t[0] in (0x02, 0x04):
                n = self.mbint()
                from nettcpd_test import mbint
                out += mbint(n) + self.take(n)
            elif t[0] == 0x0C:
                return bytes(out)
            else:
                raise AssertionError(f"unexpected record {t.hex()} in a preamble")


def wcf_service(after_end="reuse", end_delay=0.0):
    """A handler that behaves like a WCF service: Ack each preamble, answer
    each Sized Envelope with one carrying "NAME:" + the payload, answer End
    with End and then read the next preamble on the same connection.
    after_end: "reuse" (WCF), "close" (close after End), "garbage" (send
    bytes after End), or, for the second and later preambles on a
    connection, "drop" (close without answering) or "ignore" (never
    answer)."""
    def handler(c, backend):
        r = Reader(c)
        conn_no = backend.accepted
        sessions_here = 0
        while True:
            pre = r.preamble()
            if pre is None:
                with backend.lock:
                    backend.eofs += 1
                return
            sessions_here += 1
            if sessions_here > 1 and after_end == "drop":
                return
            if sessions_here > 1 and after_end == "ignore":
                time.sleep(30)
                return
            with backend.lock:
                backend.sessions.append((conn_no, pre))
            c.sendall(b"\x0b")
            while True:
                t, payload = r.record()
                if t == 0x06:
                    c.sendall(sized_envelope(backend.name.encode() + b":" + payload))
                elif t == 0x07:
                    time.sleep(end_delay)
                    if after_end == "garbage":
                        c.sendall(b"\x07junk")
                    else:
                        c.sendall(b"\x07")
                    if after_end == "close":
                        return
                    break
                else:
                    with backend.lock:
                        backend.eofs += 1
                    return
    return handler


def service(name, **kw):
    b = Backend(handler=wcf_service(**kw), name=name)
    b.sessions = []
    b.eofs = 0
    return b


def session(s, via, payloads=(b"hello",), reader=None):
    """One duplex session on s; returns the replies' payloads."""
    r = reader or Reader(s)
    s.sendall(preamble(via))
    t, _ = r.record()
    if t != 0x0B:
        return ("not acked", t)
    replies = []
    for p in payloads:
        s.sendall(sized_envelope(p))
        t, reply = r.record()
        assert t == 0x06, t
        replies.append(reply)
    s.sendall(b"\x07")
    t, _ = r.record()
    assert t == 0x07, t
    return replies


def session_loop(port, via, answers, stop, counts):
    """Until stop is set: connect, one whole session, close; counts each
    outcome: ok (a reply in answers), refused, reset, other."""
    while not stop.is_set():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            replies = session(s, via)
            s.close()
            counts["ok" if replies in answers else "other"] += 1
        except ConnectionRefusedError:
            counts["refused"] += 1
        except ConnectionResetError:
            counts["reset"] += 1


def daemon(routes, extra="", **kw):
    """A daemon with one worker: each worker has its own pool, and the
    tests count the backend connections the pool saves.  No settle period:
    a session may take the connection the one just before it left (the
    settle period is t/test_pool.py's)."""
    return Daemon(routes, extra_global="workers = 1\nbackend_pool_settle = 0\n" +
                  extra, **kw)


def routes_ab(a, b):
    return [("a", "net.tcp://+/A", a.addr), ("b", "net.tcp://+/B", b.addr)]


def test_backend_connection_kept_for_the_next_client():
    for forward in FORWARD_METHODS:
        a, b = service("A"), service("B")
        with daemon(routes_ab(a, b), forward=forward) as d:
            base = d.sockets()
            for i in range(3):
                s = d.connect()
                assert session(s, "net.tcp://h/A", [b"call %d" % i]) == [b"A:call %d" % i]
                s.close()
            assert a.accepted == 1, a.accepted
            assert [conn for conn, _ in a.sessions] == [1, 1, 1]
            assert a.sessions[0][1] == preamble("net.tcp://h/A")
            d.wait_log("backend connection pooled")
            # the pooled backend connection is the one socket left over
            d.assert_no_leak(base + 1)
        a.close()
        b.close()


def test_client_connection_rerouted_per_session():
    a, b = service("A"), service("B")
    with daemon(routes_ab(a, b)) as d:
        s = d.connect()
        r = Reader(s)
        assert session(s, "net.tcp://h/A", reader=r) == [b"A:hello"]
        assert session(s, "net.tcp://h/B", reader=r) == [b"B:hello"]
        assert session(s, "net.tcp://h/A", [b"x", b"y"], reader=r) == [b"A:x", b"A:y"]
        # an unknown Via on a reused connection is answered as on a new one
        s.sendall(preamble("net.tcp://h/Nowhere"))
        want = fault_record("EndpointNotFound")
        assert recv_exact(s, len(want)) == want
        assert s.recv(1) == b""
        s.close()
        # A's connection came back from the pool for the third session
        assert a.accepted == 1 and b.accepted == 1, (a.accepted, b.accepted)
    a.close()
    b.close()


def test_large_and_many_envelopes_byte_exact():
    big = os.urandom(3 << 20)
    small = [os.urandom(n) for n in range(1, 200)]
    # the smallest pipe (4k) is smaller than a spliced piece of envelope
    configs = [(f, "") for f in FORWARD_METHODS]
    if "splice" in FORWARD_METHODS:
        configs.append(("splice", "pipe_size = 4k"))
    for forward, extra in configs:
        a = service("A")
        with daemon([("a", "net.tcp://+/A", a.addr)], extra, forward=forward) as d:
            s = d.connect()
            r = Reader(s)
            assert session(s, "net.tcp://h/A", [big], reader=r) == [b"A:" + big]
            # large envelopes back to back (several to a pipe), sent in one
            # write while the answers come back
            bigs = [os.urandom(n) for n in (70000, 16384, 300000, 16383, 1 << 20, 5)]
            s.sendall(preamble("net.tcp://h/A"))
            assert r.record()[0] == 0x0B
            sender = threading.Thread(target=s.sendall, args=(
                b"".join(sized_envelope(b) for b in bigs) + b"\x07",))
            sender.start()
            for b in bigs:
                assert r.record() == (0x06, b"A:" + b)
            assert r.record()[0] == 0x07
            sender.join()
            # 199 envelopes in one write, and their 199 answers
            s.sendall(preamble("net.tcp://h/A"))
            assert r.record()[0] == 0x0B
            s.sendall(b"".join(sized_envelope(p) for p in small) + b"\x07")
            for p in small:
                assert r.record() == (0x06, b"A:" + p)
            assert r.record()[0] == 0x07
            s.close()
            assert a.accepted == 1
        a.close()


class SlowReader(Reader):
    """A reader that takes a few KiB at a time, with pauses: the proxy's
    writes towards it keep meeting a full socket."""

    def fill(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(3000)
            if not chunk:
                return False
            self.buf += chunk
            time.sleep(0.0002)
        return True


def test_mixed_sizes_against_a_slow_reader():
    """Small and large envelopes, back to back, to a service that reads
    slowly: partial writes meet every mix of buffer and pipe, and every
    envelope must arrive whole and in order."""
    rng = random.Random(7)
    sizes = []
    for _ in range(60):
        # a small one, so the buffer reads a header, then a large one
        sizes += [rng.choice((1, 200, 5000, 12000)),
                  rng.choice((16384, 17000, 40000, 70000, 250000))]
    payloads = [bytes([i % 251]) * n for i, n in enumerate(sizes)]

    def handler(c, backend):
        # a small receive buffer: the proxy's sends are often partial
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        r = SlowReader(c)
        r.preamble()
        c.sendall(b"\x0b")
        got = []
        while True:
            t, payload = r.record()
            if t != 0x06:
                break
            got.append(payload)
        with backend.lock:
            backend.got = got
        c.sendall(b"\x07")

    configs = [(f, "") for f in FORWARD_METHODS]
    if "splice" in FORWARD_METHODS:
        configs.append(("splice", "pipe_size = 4k"))
    for forward, extra in configs:
        a = Backend(handler=handler, name="A")
        a.got = None
        with daemon([("a", "net.tcp://+/A", a.addr)], extra, forward=forward) as d:
            s = d.connect(timeout=60)
            r = Reader(s)
            s.sendall(preamble("net.tcp://h/A"))
            assert r.record()[0] == 0x0B
            s.sendall(b"".join(sized_envelope(p) for p in payloads) + b"\x07")
            assert r.record()[0] == 0x07
            s.close()
            wait_for(lambda: a.got is not None, what="the service's count")
            assert [len(p) for p in a.got] == sizes, forward
            assert a.got == payloads, forward
        a.close()


def test_next_preamble_sent_with_the_end():
    """A client that sends its next preamble right behind its End (before
    the service's End) has it held, then routed once the session is over."""
    a, b = service("A", end_delay=0.2), service("B")
    with daemon(routes_ab(a, b)) as d:
        s = d.connect()
        r = Reader(s)
        s.sendall(preamble("net.tcp://h/A"))
        assert r.record()[0] == 0x0B
        s.sendall(b"\x07" + preamble("net.tcp://h/B"))
        assert r.record()[0] == 0x07
        assert r.record()[0] == 0x0B
        s.sendall(sized_envelope(b"q"))
        assert r.record() == (0x06, b"B:q")
        s.close()
        assert [p for _, p in a.sessions] == [preamble("net.tcp://h/A")]
        assert [p for _, p in b.sessions] == [preamble("net.tcp://h/B")]
    a.close()
    b.close()


def test_service_that_closes_after_end_is_not_reused():
    a = service("A", after_end="close")
    with daemon([("a", "net.tcp://+/A", a.addr)]) as d:
        for i in range(3):
            s = d.connect()
            assert session(s, "net.tcp://h/A") == [b"A:hello"]
            s.close()
        assert a.accepted == 3, a.accepted
    a.close()


def test_pooled_connection_dropped_under_the_preamble_is_redialled():
    """The service closes a kept connection just as the next preamble
    arrives: the client never notices; a new connection serves it."""
    a = service("A", after_end="drop")
    with daemon([("a", "net.tcp://+/A", a.addr)]) as d:
        for i in range(3):
            s = d.connect()
            assert session(s, "net.tcp://h/A", [b"n%d" % i]) == [b"A:n%d" % i]
            s.close()
        assert len(a.sessions) == 3
        d.wait_log("redialling")
    a.close()


def test_silent_pooled_connection_is_redialled_after_connect_timeout():
    a = service("A", after_end="ignore")
    with daemon([("a", "net.tcp://+/A", a.addr)], extra="connect_timeout = 1") as d:
        s = d.connect()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        s.close()
        s = d.connect()
        started = time.time()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        elapsed = time.time() - started
        assert 0.9 < elapsed < 4 * SLOW, elapsed
        s.close()
        d.wait_log("did not answer the preamble, redialling")
        assert a.accepted == 2
    a.close()


def test_bytes_after_the_service_end_close_its_connection():
    a = service("A", after_end="garbage")
    with daemon([("a", "net.tcp://+/A", a.addr)]) as d:
        for i in range(2):
            s = d.connect()
            r = Reader(s)
            assert session(s, "net.tcp://h/A", reader=r) == [b"A:hello"]
            s.close()
        d.wait_log("closed (bytes after its End)")
        assert a.accepted == 2
    a.close()


def test_service_ends_first_and_client_just_closes():
    """The service sends End first; the client closes without one.  The
    session is not over, so the proxy passes the FIN on and the service
    sees its end of stream."""
    def handler(c, backend):
        r = Reader(c)
        r.preamble()
        c.sendall(b"\x0b\x07")
        rest = c.recv(1)
        with backend.lock:
            backend.tail = rest
    a = Backend(handler=handler, name="A")
    a.tail = None
    with daemon([("a", "net.tcp://+/A", a.addr)]) as d:
        base = d.sockets()
        s = d.connect()
        s.sendall(preamble("net.tcp://h/A"))
        assert recv_exact(s, 2) == b"\x0b\x07"
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""
        wait_for(lambda: a.tail == b"", what="the service's end of stream")
        s.close()
        d.assert_no_leak(base)
    a.close()


def test_client_fin_after_its_end():
    a = service("A", end_delay=0.2)
    with daemon([("a", "net.tcp://+/A", a.addr)]) as d:
        base = d.sockets()
        s = d.connect()
        r = Reader(s)
        s.sendall(preamble("net.tcp://h/A"))
        assert r.record()[0] == 0x0B
        s.sendall(b"\x07")
        s.shutdown(socket.SHUT_WR)
        assert r.record()[0] == 0x07
        assert s.recv(1) == b""
        s.close()
        d.assert_no_leak(base + 1)  # the service's connection is pooled
    a.close()


def test_client_halfclose_behind_pipelined_envelopes_slow_reader():
    """A client that sends hundreds of envelopes, End and its FIN at once,
    and reads the replies only later, through a small receive buffer: every
    reply, the service's End, then the end of the stream, and the service's
    connection pooled.  (The kernel fast path this build no longer has
    stalled here: the replies it had queued for the client held back the
    End it handed to user space, and the FIN, which waits in no queue,
    overtook it; make soak's framed_client_halfclose found it.)"""
    for forward in FORWARD_METHODS:
        a = service("A")
        with daemon([("a", "net.tcp://+/A", a.addr)], forward=forward) as d:
            for i in range(3):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                s.settimeout(10 * SLOW)
                s.connect(("127.0.0.1", d.port))
                r = Reader(s)
                assert session(s, "net.tcp://h/A", [b"warm"], reader=r) == [b"A:warm"]
                payloads = [os.urandom(1 + (i * 977 + k * 4099) % 16000)
                            for k in range(300 + 200 * i)]
                wire = b"".join(sized_envelope(p) for p in payloads) + b"\x07"

                def send(s=s, wire=wire, i=i):
                    s.sendall(preamble("net.tcp://h/A"))
                    if i == 1:
                        for k in range(0, len(wire), 1000):
                            s.sendall(wire[k:k + 1000])
                    else:
                        s.sendall(wire)
                    s.shutdown(socket.SHUT_WR)

                sender = threading.Thread(target=send, daemon=True)
                sender.start()
                time.sleep(0.3)   # the replies pile up towards the client
                assert r.record()[0] == 0x0B
                for k, p in enumerate(payloads):
                    assert r.record() == (0x06, b"A:" + p), (forward, i, k)
                assert r.record()[0] == 0x07, (forward, i)
                assert s.recv(1) == b"", (forward, i)
                sender.join(10 * SLOW)
                assert not sender.is_alive()
                s.close()
            # (a session whose envelopes came with its preamble takes a new
            # backend connection: test_pool's isolation rule)
            d.wait_log("backend connection pooled")
        a.close()


def test_follow_sessions_off_is_a_plain_pipe():
    a, b = service("A"), service("B")
    with daemon(routes_ab(a, b), extra="follow_sessions = off") as d:
        s = d.connect()
        r = Reader(s)
        assert session(s, "net.tcp://h/A", reader=r) == [b"A:hello"]
        # the second session goes down the same pipe, to A
        assert session(s, "net.tcp://h/B", reader=r) == [b"A:hello"]
        s.close()
        s = d.connect()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        s.close()
        assert a.accepted == 2 and b.accepted == 0
    a.close()
    b.close()


def test_backend_pool_zero_still_reroutes():
    a, b = service("A"), service("B")
    with daemon(routes_ab(a, b), extra="backend_pool = 0") as d:
        base = d.sockets()
        s = d.connect()
        r = Reader(s)
        assert session(s, "net.tcp://h/A", reader=r) == [b"A:hello"]
        assert session(s, "net.tcp://h/B", reader=r) == [b"B:hello"]
        assert session(s, "net.tcp://h/A", reader=r) == [b"A:hello"]
        s.close()
        assert a.accepted == 2 and b.accepted == 1
        wait_for(lambda: a.eofs == 2, what="A's connections closed")
        d.assert_no_leak(base)
    a.close()
    b.close()


def test_idle_pool_entries_expire():
    a = service("A")
    with daemon([("a", "net.tcp://+/A", a.addr)],
                extra="backend_pool_timeout = 300ms") as d:
        base = d.sockets()
        s = d.connect()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        s.close()
        wait_for(lambda: a.eofs == 1, what="the idle backend connection closed")
        d.assert_no_leak(base)
        s = d.connect()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        s.close()
        assert a.accepted == 2
    a.close()


def test_keepalive_timeout_between_sessions():
    a = service("A")
    # idle_timeout is for forwarding; between sessions keepalive_timeout rules
    with daemon([("a", "net.tcp://+/A", a.addr)],
                extra="keepalive_timeout = 500ms\nidle_timeout = 1h") as d:
        s = d.connect()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        started = time.time()
        assert s.recv(1) == b""
        assert time.time() - started < 3 * SLOW
        d.wait_log("keepalive_timeout expired after 1 sessions")
        s.close()
    a.close()


def test_many_clients_share_a_few_backend_connections():
    a = service("A")
    with daemon([("a", "net.tcp://+/A", a.addr)]) as d:
        errors = []

        def client(n):
            try:
                for i in range(20):
                    s = d.connect()
                    got = session(s, "net.tcp://h/A", [b"%d.%d" % (n, i)])
                    if got != [b"A:%d.%d" % (n, i)]:
                        errors.append(got)
                    s.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert len(a.sessions) == 160
        # at most one connection per concurrent client
        assert a.accepted <= 8, a.accepted
    a.close()


if __name__ == "__main__":
    run_tests(globals())
