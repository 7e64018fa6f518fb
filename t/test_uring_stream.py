#!/usr/bin/env python3
"""forward = uring, a followed session read ahead (src/uring_stream.c):
from a large envelope on, a multishot receive reads on past record
boundaries, so what it reads past the session's End, or past a record
that has no place in it, must get the outcome the pump gives such bytes:
a next preamble held and routed afresh, more than that reset, a service's
bytes after its End dropped with its connection, a service out of the
protocol passed on whole.  Each case here sends those bytes in the same
write as a large envelope, so that the read-ahead has them in hand; the
rest of the suite runs on this path too (NETTCPD_FORWARD=uring, .ci/run)."""

import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, Backend, Daemon, preamble,  # noqa: E402
                          recv_exact, recv_until_close, reset, run_tests,
                          sized_envelope, wait_for)
from test_hostile import vias  # noqa: E402
from test_sessions import Reader, SlowReader, service  # noqa: E402
from test_syscalls import Strace, uring_runs  # noqa: E402

BIG = 300_000   # a large envelope: the read-ahead starts at its payload


def daemon(routes, extra=""):
    return Daemon(routes, forward="uring",
                  extra_global="workers = 1\nbackend_pool_settle = 0\n" + extra)


def reads_ahead(d):
    """Whether this worker reads sessions ahead; where the kernel cannot
    (no multishot receive), a notice says so and large payloads are
    spliced, which the rest of the suite covers."""
    if not uring_runs(d):
        return False
    if "sessions read ahead" in d.log():
        return True
    print("NOTICE: the read-ahead is not run here: " + [
        ln for ln in d.log().splitlines() if "large payloads are spliced" in ln][0])
    return False


def first_envelope(c):
    """A service's side up to the client's first envelope: a service
    writes nothing after its Ack before that (nettcpd resets one that
    does, as another session's bytes)."""
    r = Reader(c)
    pre = r.preamble()
    c.sendall(b"\x0b")
    r.record()
    return r, pre


def acked(d, via):
    """A client of d whose preamble for via the service has acked: the
    socket and its Reader."""
    s = d.connect(timeout=30 * SLOW)
    r = Reader(s)
    s.sendall(preamble(via))
    assert r.record()[0] == 0x0B
    return s, r


def drain(c):
    """Read c until it ends or fails: what it read."""
    got = bytearray()
    try:
        while True:
            chunk = c.recv(1 << 16)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    return bytes(got)


def streamer(data, fin=False):
    """A service that, after the client's first envelope, writes data in
    one write (and its FIN, with fin), then reads until the client
    closes."""
    def handler(c, backend):
        first_envelope(c)
        c.sendall(data)
        if fin:
            c.shutdown(socket.SHUT_WR)
        drain(c)
        c.close()
    return Backend(handler=handler, name="S")


def sender(s, data):
    """sendall on its own thread: the replies come back meanwhile."""
    t = threading.Thread(target=s.sendall, args=(data,))
    t.start()
    return t


def test_large_envelopes_go_through_the_ring_not_splice():
    """A session of large envelopes both ways moves through the ring: no
    splice (forward = splice would make hundreds), every byte in order."""
    a = service("A")
    with daemon([("a", "net.tcp://+/A", a.addr)]) as d:
        if not reads_ahead(d):
            a.close()
            return
        s = d.connect(timeout=30 * SLOW)
        r = Reader(s)
        bigs = [os.urandom(BIG + i) for i in range(8)]
        tracer = Strace(d, "splice,io_uring_enter")
        try:
            s.sendall(preamble("net.tcp://h/A"))
            assert r.record()[0] == 0x0B
            t = sender(s, b"".join(sized_envelope(b) for b in bigs) + b"\x07")
            for b in bigs:
                assert r.record() == (0x06, b"A:" + b)
            assert r.record()[0] == 0x07
            t.join()
        finally:
            counts = tracer.stop()
        s.close()
    a.close()
    print(f"  8 envelopes of 300 KB each way: {counts}")
    assert counts.get("io_uring_enter", (0, 0))[0] > 0, counts
    assert counts.get("splice", (0, 0))[0] == 0, counts


def test_next_session_in_the_same_write_is_routed_afresh():
    """A large envelope, End, and the next session to another route, all
    in one write: the read-ahead has the next preamble in hand when it
    meets End; it goes to B alone, after A's End."""
    a, b = service("A"), service("B")
    with daemon([("a", "net.tcp://+/A", a.addr), ("b", "net.tcp://+/B", b.addr)]) as d:
        if not reads_ahead(d):
            a.close()
            b.close()
            return
        big = os.urandom(BIG)
        s = d.connect(timeout=30 * SLOW)
        r = Reader(s)
        t = sender(s, preamble("net.tcp://h/A") + sized_envelope(big) + b"\x07" +
                   preamble("net.tcp://h/B") + sized_envelope(b"next") + b"\x07")
        assert [r.record() for _ in range(3)] == [
            (0x0B, None), (0x06, b"A:" + big), (0x07, None)]
        assert [r.record() for _ in range(3)] == [
            (0x0B, None), (0x06, b"B:next"), (0x07, None)]
        t.join()
        s.close()
        assert vias(a) == ["net.tcp://h/A"] and vias(b) == ["net.tcp://h/B"]
    a.close()
    b.close()


def test_client_fin_right_behind_its_end():
    """A large envelope, End and the client's FIN in one go: the read-ahead
    meets the FIN past the End; the client still gets its answer and End,
    then the end of stream, and the service's connection is pooled."""
    a = service("A", end_delay=0.2)
    with daemon([("a", "net.tcp://+/A", a.addr)]) as d:
        if not reads_ahead(d):
            a.close()
            return
        base = d.sockets()
        big = os.urandom(BIG)
        s, r = acked(d, "net.tcp://h/A")
        s.sendall(sized_envelope(big) + b"\x07")
        s.shutdown(socket.SHUT_WR)
        assert r.record() == (0x06, b"A:" + big)
        assert r.record()[0] == 0x07
        assert s.recv(1) == b""
        s.close()
        d.assert_no_leak(base + 1)  # the service's connection is pooled
    a.close()


def end_then_recording(name):
    """Acks, answers each envelope, answers End; then records every byte
    that comes after the End until the connection closes."""
    def handler(c, backend):
        r = Reader(c)
        if r.preamble() is None:
            return
        c.sendall(b"\x0b")
        while True:
            t, payload = r.record()
            if t == 0x06:
                c.sendall(sized_envelope(name.encode() + b":" + payload))
            elif t == 0x07:
                c.sendall(b"\x07")
                break
            else:
                return
        got = bytes(r.buf) + drain(c)
        with backend.lock:
            backend.after_end.append(got)
    b = Backend(handler=handler, name=name)
    b.after_end = []
    return b


def test_more_than_a_preamble_after_end_is_reset_and_reaches_no_service():
    """A client that sends, in one write with a large envelope and its End,
    more than a preamble's worth after the End (8 KB: held in the pump's
    buffer; 200 KB: more than it holds, left in the stream's) is reset by
    the session policy once A has answered (the reset may overtake A's
    answer: the client did not wait for it); A sees none of those bytes."""
    for after in (8 << 10, 200 << 10):
        a = end_then_recording("A")
        # Not pooled, so that A's connection closes when the session ends.
        with daemon([("a", "net.tcp://+/A", a.addr)], "backend_pool = 0\n") as d:
            if not reads_ahead(d):
                a.close()
                return
            base = d.sockets()
            big = os.urandom(BIG)
            s, r = acked(d, "net.tcp://h/A")
            t = sender(s, sized_envelope(big) + b"\x07" + b"\x00" * after)
            answer = sized_envelope(b"A:" + big) + b"\x07"
            data, how = recv_until_close(s)
            assert answer.startswith(bytes(r.buf) + data) and how in ("reset", "eof"), \
                (after, len(data), how)
            t.join()
            d.wait_log("bytes after End without waiting for the service, reset")
            wait_for(lambda: a.after_end, what="A's connection closed")
            assert a.after_end == [b""], (after, len(a.after_end[0]))
            s.close()
            d.assert_no_leak(base)
        a.close()


def test_service_bytes_after_its_end_never_reach_the_client():
    """A service that writes a large reply, its End and 200 KB more in one
    write: the client gets its reply and the End, nothing after; the
    connection is closed, not pooled, and the next session is served."""
    stray = b"\x06" + os.urandom(200 << 10)
    big = os.urandom(BIG)

    def handler(c, backend):
        r = Reader(c)
        if r.preamble() is None:
            return
        c.sendall(b"\x0b")
        t, payload = r.record()
        if t != 0x06 or r.record()[0] != 0x07:
            return
        try:
            c.sendall(sized_envelope(b"S:" + big) + b"\x07" + stray)
            r.take(1)   # until the proxy closes it
        except OSError:
            pass
    svc = Backend(handler=handler, name="S")
    with daemon([("s", "net.tcp://+/S", svc.addr)]) as d:
        if not reads_ahead(d):
            svc.close()
            return
        for i in range(2):
            s = d.connect(timeout=30 * SLOW)
            r = Reader(s)
            s.sendall(preamble("net.tcp://h/S") + sized_envelope(b"q") + b"\x07")
            assert [r.record() for _ in range(3)] == [
                (0x0B, None), (0x06, b"S:" + big), (0x07, None)]
            s.settimeout(0.5 * SLOW)
            try:
                more = s.recv(65536)
            except socket.timeout:
                more = None
            assert more is None, more[:20]
            s.close()
        d.wait_log("closed (bytes after its End)")
        assert svc.accepted == 2, svc.accepted
    svc.close()


def test_service_out_of_the_protocol_is_passed_on_whole():
    """A service that writes a large envelope, a record no session holds
    and 300 KB of whatever after it, in one write: from that record on it
    is passed on unread, so the client gets every byte, in order, and the
    end of stream when the service closes."""
    tail = b"\x0c" + os.urandom(300 << 10)
    big = os.urandom(BIG)
    svc = streamer(sized_envelope(big) + tail, fin=True)
    with daemon([("s", "net.tcp://+/S", svc.addr)]) as d:
        if not reads_ahead(d):
            svc.close()
            return
        base = d.sockets()
        s = d.connect(timeout=30 * SLOW)
        s.sendall(preamble("net.tcp://h/S") + sized_envelope(b"go"))
        want = b"\x0b" + sized_envelope(big) + tail
        data, how = recv_until_close(s, limit=len(want) + 1)
        assert how == "eof" and data == want, (how, len(data), len(want))
        d.wait_log("service sent record 0x0c out of the session")
        s.close()
        d.assert_no_leak(base)
    svc.close()


def test_slow_reader_behind_many_large_envelopes():
    """A service streams 24 MB in large envelopes to a client that reads
    nothing for a while, then a few KB at a time: the stream stops
    receiving while it holds its share of buffers and goes on as the
    client reads; every byte arrives, in order.  (A receive buffer of 8 KB
    would do the same, at about 100 KB/s on loopback whatever forwards:
    longer than the test service's socket timeout.)"""
    bigs = [os.urandom(BIG) for _ in range(80)]
    svc = streamer(b"".join(sized_envelope(b) for b in bigs) + b"\x07")
    with daemon([("s", "net.tcp://+/S", svc.addr)]) as d:
        if not reads_ahead(d):
            svc.close()
            return
        base = d.sockets()
        s = d.connect(timeout=60 * SLOW)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(preamble("net.tcp://h/S") + sized_envelope(b"go"))
        assert recv_exact(s, 1) == b"\x0b"
        time.sleep(0.5)
        r = SlowReader(s)
        for b in bigs:
            assert r.record() == (0x06, b)
        assert r.record()[0] == 0x07
        s.close()
        d.assert_no_leak(base)
    svc.close()


def test_more_streams_than_the_ring_has_buffers():
    """Twelve clients that do not read while their services stream large
    envelopes hold more buffers than the worker's ring has (128, 16 a
    direction): the streams the ring cannot serve go on by splice, and
    every client gets every byte once it reads."""
    n, count = 12, 20
    payloads = [[os.urandom(BIG) for _ in range(count)] for _ in range(n)]
    ready = threading.Barrier(n + 1)

    def handler(c, backend):
        _, pre = first_envelope(c)
        i = int(pre.split(b"/S/")[1][:2])
        c.sendall(b"".join(sized_envelope(p) for p in payloads[i]) + b"\x07")
        drain(c)
        c.close()

    svc = Backend(handler=handler, name="S")
    with daemon([("s", "net.tcp://+/S", svc.addr)]) as d:
        if not reads_ahead(d):
            svc.close()
            return
        base = d.sockets()
        clients = []
        for i in range(n):
            s = d.connect(timeout=60 * SLOW)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(preamble("net.tcp://h/S/%02d" % i) + sized_envelope(b"go"))
            assert recv_exact(s, 1) == b"\x0b"
            clients.append(s)
        time.sleep(1.0 * SLOW)
        errors = []
        tracer = Strace(d, "io_uring_enter,splice")

        def read_all(i, s):
            try:
                ready.wait()
                r = Reader(s)
                for p in payloads[i]:
                    got = r.record()
                    if got != (0x06, p):
                        errors.append((i, got[0], len(got[1] or b"")))
                        return
                if r.record()[0] != 0x07:
                    errors.append((i, "no End"))
            except Exception as e:   # noqa: BLE001 - said below
                errors.append((i, repr(e)))
        threads = [threading.Thread(target=read_all, args=(i, s))
                   for i, s in enumerate(clients)]
        for t in threads:
            t.start()
        ready.wait()
        try:
            for t in threads:
                t.join(120 * SLOW)
        finally:
            counts = tracer.stop()
        assert not errors, errors
        # Spliced once the ring was out of buffers: not a new stream tried
        # at every wakeup, which finds the ring as empty (that defect made
        # 762 io_uring_enter here and never spliced).
        print(f"  {n} clients, {n * count * BIG >> 20} MB: {counts}")
        assert counts.get("splice", (0, 0))[0] > 0, counts
        for s in clients:
            s.close()
        d.assert_no_leak(base)
    svc.close()


def test_client_reset_in_the_middle_of_a_stream():
    """A client resets while large envelopes stream both ways: the stream's
    receive and send are cancelled before its buffers go back, both
    connections close, and nothing is left open (ASan would see a use of
    a freed buffer)."""
    def handler(c, backend):
        r, _ = first_envelope(c)
        # What the client streams is read, so that its send goes on.
        threading.Thread(target=drain, args=(c,), daemon=True).start()
        chunk = sized_envelope(os.urandom(BIG))
        try:
            while True:
                c.sendall(chunk)
        except OSError:
            with backend.lock:
                backend.closed += 1

    svc = Backend(handler=handler, name="S")
    svc.closed = 0
    with daemon([("s", "net.tcp://+/S", svc.addr)]) as d:
        if not reads_ahead(d):
            svc.close()
            return
        base = d.sockets()
        for i in range(3):
            s = d.connect(timeout=30 * SLOW)
            s.sendall(preamble("net.tcp://h/S") + sized_envelope(b"go"))
            assert recv_exact(s, 1) == b"\x0b"
            s.sendall(sized_envelope(os.urandom(4 * BIG)))
            recv_exact(s, 1 << 20)
            reset(s)
        wait_for(lambda: svc.closed == 3, 10 * SLOW, "the service's connections closed")
        d.assert_no_leak(base)
    svc.close()


if __name__ == "__main__":
    run_tests(globals())
