"""Reload on SIGHUP: a new generation of routes and certificates for new
connections (and for the next session of a client connection idle between
sessions), while sessions under way keep theirs; a broken file is refused
with FILE:LINE and the running generation goes on serving; the port never
refuses a connection across reloads."""

import os
import shutil
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (Daemon, fault_record, preamble, recv_exact,  # noqa: E402
                          recv_until_close, run_tests, sized_envelope, wait_for)
from test_sessions import Reader, service, session, session_loop  # noqa: E402


def config(d, routes, extra=""):
    """Rewrite the daemon's file: routes are (name, via, backend)."""
    lines = ["[global]", f"listen = 127.0.0.1:{d.port}", "log_level = debug",
             "workers = 2", extra, ""]
    for name, via, backend in routes:
        lines += [f"[{name}]", f"via = {via}", f"backend = {backend}", ""]
    tmp = d.config + ".new"
    with open(tmp, "w") as f:
        f.write("\n".join(lines))
    os.replace(tmp, d.config)   # as an editor or a config manager does


def reload(d, want="reloaded"):
    """SIGHUP, and wait for its log line; returns the lines it added."""
    before = d.log().count("SIGHUP received")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.log().count("SIGHUP received") > before, what="the reload")
    last = d.log().split("SIGHUP received")[-1]
    assert want in last, last
    return last


def started(routes, extra=""):
    d = Daemon(raw_config="")
    config(d, routes, extra)
    return d


def test_routes_change_for_new_sessions_only():
    """/Gone is removed and /New added while a session on /Gone is under
    way: that session goes on to its End on its service; a new client gets
    EndpointNotFound for /Gone and B for /New; a client connection idle
    between sessions since before the reload routes its next session with
    the new routes."""
    a, b = service("A"), service("B")
    with started([("a", "net.tcp://+/A", a.addr), ("gone", "net.tcp://+/Gone", b.addr)]) as d:
        # under way: preamble acked, one envelope answered
        busy = d.connect()
        rb = Reader(busy)
        busy.sendall(preamble("net.tcp://h/Gone"))
        assert rb.record()[0] == 0x0B
        busy.sendall(sized_envelope(b"before"))
        assert rb.record() == (0x06, b"B:before")
        # idle between sessions
        idle = d.connect()
        assert session(idle, "net.tcp://h/A") == [b"A:hello"]

        config(d, [("a", "net.tcp://+/A", a.addr), ("new", "net.tcp://+/New", b.addr)])
        assert "generation 2, 2 routes" in reload(d)

        busy.sendall(sized_envelope(b"after"))
        assert rb.record() == (0x06, b"B:after")
        busy.sendall(b"\x07")
        assert rb.record()[0] == 0x07
        busy.close()
        assert session(idle, "net.tcp://h/New") == [b"B:hello"]
        idle.sendall(preamble("net.tcp://h/Gone"))
        assert recv_until_close(idle)[0] == fault_record("EndpointNotFound")
        idle.close()
        s = d.connect()
        s.sendall(preamble("net.tcp://h/Gone"))
        assert recv_until_close(s)[0] == fault_record("EndpointNotFound")
        s.close()
        s = d.connect()
        assert session(s, "net.tcp://h/New") == [b"B:hello"]
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        s.close()
    a.close()
    b.close()


def test_a_gibibyte_stream_keeps_every_byte_across_reloads():
    """A client streams 1 GiB (1,024 envelopes of 1 MiB, followed and
    spliced) while the file is rewritten and reloaded five times, its own
    route removed by the third: the connection stays, and the service gets
    every byte (it answers the client's End with the digest it computed)."""
    import hashlib
    from nettcpd_test import Backend, mbint, read_preamble

    def digest_service(c, backend):
        read_preamble(c)
        c.sendall(b"\x0b")
        h, total = hashlib.sha256(), 0
        while True:
            t = c.recv(1)
            if t != b"\x06":
                break
            size = shift = 0
            while True:
                b = c.recv(1)[0]
                size |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            while size:
                chunk = c.recv(min(size, 1 << 20))
                h.update(chunk)
                size -= len(chunk)
                total += len(chunk)
        backend.total = total
        c.sendall(sized_envelope(h.digest()) + b"\x07")

    a = Backend(handler=digest_service, name="A")
    block = os.urandom(1 << 20)
    head = b"\x06" + mbint(len(block))
    with started([("a", "net.tcp://+/A", a.addr)]) as d:
        s = d.connect(timeout=60)
        r = Reader(s)
        s.sendall(preamble("net.tcp://h/A"))
        assert r.record()[0] == 0x0B
        want = hashlib.sha256()
        for i in range(1024):
            s.sendall(head + block)
            want.update(block)
            if i % 200 == 100:
                routes = [("a", "net.tcp://+/A", a.addr)] if i < 500 else []
                config(d, routes + [(f"r{i}", f"net.tcp://+/R{i}", a.addr)])
                reload(d)
        s.sendall(b"\x07")
        assert r.record() == (0x06, want.digest())
        assert r.record()[0] == 0x07
        assert a.total == 1 << 30
        s.close()
        assert d.log().count("SIGHUP received: reloaded") == 5
    a.close()


def test_broken_file_is_refused_and_the_old_routes_serve():
    """A file that does not load: every problem logged with FILE:LINE, the
    process keeps running on generation 1, traffic flows through it all;
    a change that takes a restart (listen) is refused by name; the fixed
    file then loads as generation 2."""
    a = service("A")
    with started([("a", "net.tcp://+/A", a.addr)]) as d:
        with open(d.config, "a") as f:
            f.write("\n[broken]\nvia = net.tcp://+/B\nbackend = nowhere:port\n")
        last = reload(d, "failed")
        lineno = open(d.config).read().splitlines().index("backend = nowhere:port") + 1
        assert f"{d.config}:{lineno}:" in last, last
        assert "generation 1 goes on serving" in last
        s = d.connect()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        s.close()

        config(d, [("a", "net.tcp://+/A", a.addr)])
        with open(d.config) as f:
            text = f.read()
        with open(d.config, "w") as f:
            f.write(text.replace("workers = 2", "workers = 3"))
        assert "'workers' changed, which takes a restart" in reload(d, "refused")
        # a new address that cannot be bound (taken): refused, nothing changed
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config(d, [("a", "net.tcp://+/A", a.addr)])
        with open(d.config) as f:
            text = f.read()
        with open(d.config, "w") as f:
            f.write(text.replace(f"listen = 127.0.0.1:{d.port}",
                                 f"listen = 127.0.0.1:{d.port}, 127.0.0.1:{taken.getsockname()[1]}"))
        reload(d, "failed")
        assert f"cannot listen on 127.0.0.1:{taken.getsockname()[1]}: Address already in use" \
            in d.log()
        s = d.connect()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        s.close()
        taken.close()

        config(d, [("a", "net.tcp://+/A", a.addr), ("b", "net.tcp://+/B", a.addr)])
        assert "generation 2, 2 routes" in reload(d)
        assert d.proc.poll() is None
        s = d.connect()
        assert session(s, "net.tcp://h/B") == [b"A:hello"]
        s.close()
    a.close()


def test_listeners_added_and_removed_by_reload():
    """A reload that adds an address listens there before it says so; one
    that drops it closes it (new clients refused) while a session that came
    in through it goes on; the address both keep never stops listening."""
    a = service("A")
    from nettcpd_test import free_port
    extra = free_port()
    with started([("a", "net.tcp://+/A", a.addr)]) as d:
        base = d.config
        with open(base) as f:
            text = f.read()
        with open(base, "w") as f:
            f.write(text.replace(f"listen = 127.0.0.1:{d.port}",
                                 f"listen = 127.0.0.1:{d.port}, 127.0.0.1:{extra}"))
        assert "generation 2" in reload(d)
        d.wait_log(f"listening on 127.0.0.1:{extra}")
        busy = socket.create_connection(("127.0.0.1", extra), timeout=5)
        rb = Reader(busy)
        busy.sendall(preamble("net.tcp://h/A"))
        assert rb.record()[0] == 0x0B
        config(d, [("a", "net.tcp://+/A", a.addr)])
        assert "generation 3" in reload(d)
        d.wait_log(f"no longer listening on 127.0.0.1:{extra}")
        try:
            socket.create_connection(("127.0.0.1", extra), timeout=5).close()
            raise AssertionError("the dropped address still accepts")
        except ConnectionRefusedError:
            pass
        busy.sendall(sized_envelope(b"x") + b"\x07")
        assert rb.record() == (0x06, b"A:x")
        assert rb.record()[0] == 0x07
        busy.close()
        s = d.connect()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        s.close()
    a.close()


def test_no_connection_refused_or_reset_across_20_reloads():
    """Clients connect in a tight loop, each with a whole session, while
    the file is rewritten and reloaded 20 times: every one is served."""
    a, b = service("A"), service("B")
    stop = threading.Event()
    counts = {"ok": 0, "refused": 0, "reset": 0, "other": 0}

    with started([("a", "net.tcp://+/A", a.addr)]) as d:
        threads = [threading.Thread(target=session_loop, args=(
            d.port, "net.tcp://h/A", ([b"A:hello"], [b"B:hello"]), stop, counts)) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            for i in range(20):
                backend = b.addr if i % 2 == 0 else a.addr
                config(d, [("a", "net.tcp://+/A", backend), (f"r{i}", f"net.tcp://+/R{i}", a.addr)])
                assert f"generation {i + 2}, 2 routes" in reload(d)
                time.sleep(0.02)
        finally:
            stop.set()
            for t in threads:
                t.join()
        print(f"  across 20 reloads: {counts}")
        assert counts["ok"] > 20 and counts["refused"] == 0 and counts["reset"] == 0 \
            and counts["other"] == 0, counts
    a.close()
    b.close()


def test_renewed_certificate_is_read_on_reload():
    """The certificate file is replaced (a renewal) and nettcpd reloaded: a
    new client's handshake gets the new certificate, while a TLS session
    under way goes on under the old one."""
    import test_tls
    from test_tls_sessions import RecordTLSClient, second_certificate, tls_session, upgraded
    test_tls.make_pki()
    second_certificate()
    pki = test_tls.PKI
    live_cert, live_key = os.path.join(pki, "live.pem"), os.path.join(pki, "live.key")
    shutil.copy(os.path.join(pki, "server.pem"), live_cert)
    shutil.copy(os.path.join(pki, "server.key"), live_key)
    a = service("A")
    tls = f"[one]\nvia = net.tcp://+/One\nbackend = {a.addr}\ntls = terminate\n" \
          f"tls_cert = {live_cert}\ntls_key = {live_key}\n"
    d = Daemon(raw_config="")
    with open(d.config, "w") as f:
        f.write(f"[global]\nlisten = 127.0.0.1:{d.port}\nlog_level = debug\n\n{tls}")
    with d:
        s = d.connect()
        old = tls_session(s, "net.tcp://localhost/One", [b"1"], b"A")
        busy = d.connect()
        t = upgraded(busy, "net.tcp://localhost/One")
        t.send(b"\x0c")
        rb = Reader(t)
        assert rb.record()[0] == 0x0B
        # the renewal: both files replaced, then the reload
        shutil.copy(os.path.join(pki, "second.pem"), live_cert)
        shutil.copy(os.path.join(pki, "second.key"), live_key)
        reload(d)
        t.send(sized_envelope(b"still"))
        assert rb.record() == (0x06, b"A:still")
        assert t.obj.getpeercert(binary_form=True) == old
        s2 = d.connect()
        new = tls_session(s2, "net.tcp://localhost/One", [b"2"], b"A")
        assert new != old, "the reload did not read the renewed certificate"
        # the client connection that was idle gets the new one for its next session
        again = tls_session(s, "net.tcp://localhost/One", [b"3"], b"A")
        assert again == new
        for c in (s, s2, busy):
            c.close()
        assert isinstance(t, RecordTLSClient)
    a.close()


if __name__ == "__main__":
    run_tests(globals())
