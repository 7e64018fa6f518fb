"""Unix-domain backends (backend = unix:/path): routing and the byte-exact
replay, bulk data through splice and through copy, sessions followed and
the backend pool, TLS termination, a missing socket file, a refused or
forbidden one, a full listen backlog, and the configuration's checks.
Real daemon, real sockets; the services listen on unix sockets."""

import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, Backend, Daemon, FORWARD_METHODS,  # noqa: E402
                          fault_record, free_port, preamble, read_preamble,
                          recv_exact, recv_until_close, reset, run_tests,
                          sized_envelope, wait_for)
from test_forwarding import BULK, PIPE, bulk_backend, pattern  # noqa: E402
from test_sessions import Reader, session, wcf_service  # noqa: E402
import test_tls  # noqa: E402

SOCKDIR = tempfile.mkdtemp(prefix="nettcpd-unix-")


def sock_path(name):
    return os.path.join(SOCKDIR, name)


def unix_service(name, **kw):
    """A WCF-like service (test_sessions.wcf_service) on a unix socket."""
    path = sock_path(name.lower() + ".sock")
    if os.path.exists(path):
        os.unlink(path)
    b = Backend(handler=wcf_service(**kw), name=name, path=path)
    b.sessions = []
    b.eofs = 0
    return b


def daemon(routes, extra="", **kw):
    """One worker, so the tests can count what its pool saves; no settle
    period, so a session may take the connection the one before it left."""
    return Daemon(routes, extra_global="workers = 1\nbackend_pool_settle = 0\n" +
                  extra, **kw)


def expect_fault(d, via, name="EndpointUnavailable", timeout=10.0):
    """A preamble for via gets exactly the fault record, then the close."""
    s = d.connect(timeout=timeout * SLOW)
    s.sendall(preamble(via))
    data, how = recv_until_close(s)
    s.close()
    assert data == fault_record(name), (data, how, d.log())


def nettcpd_check(text, verbose=False):
    path = os.path.join(SOCKDIR, "check.ini")
    with open(path, "w") as f:
        f.write(text)
    args = [NETTCPD, "-t"] + (["-v"] if verbose else []) + ["-c", path]
    return path, subprocess.run(args, capture_output=True, text=True)


def test_routes_and_replays_byte_exact():
    """Two routes to two socket files; each service gets exactly the
    client's preamble, and -t -v names the socket."""
    a, b = unix_service("A"), unix_service("B")
    with daemon([("a", "net.tcp://+/A", a.addr), ("b", "net.tcp://+/B", b.addr)]) as d:
        for via, svc in (("net.tcp://h/A/calc", a), ("net.tcp://h/B", b)):
            s = d.connect()
            assert session(s, via, [b"x" * 300]) == [svc.name.encode() + b":" + b"x" * 300]
            s.close()
            assert svc.sessions[-1][1] == preamble(via), svc.sessions
        d.wait_log(f"forwarding to {a.addr}")
    _, r = nettcpd_check(open(d.config).read(), verbose=True)
    assert r.returncode == 0, r.stderr
    assert f"-> [a] {a.addr}" in r.stdout, r.stdout
    a.close()
    b.close()


def test_bulk_both_ways_through_splice_and_copy():
    """24 MiB each way at once through the plain pipe, then followed
    sessions with envelopes of several MiB (the spliced payloads), both
    forward methods."""
    for forward in FORWARD_METHODS:
        path = sock_path("bulk.sock")
        b = Backend(bulk_backend, path=path)
        with Daemon(extra_global=PIPE, routes=[("bulk", "net.tcp://+/Bulk", b.addr)],
                    forward=forward) as d:
            base = d.sockets()
            s = d.connect(timeout=60)
            s.sendall(preamble("net.tcp://h/Bulk"))
            assert recv_exact(s, 1) == b"\x0b"
            up = pattern(b"up", BULK)
            result = {}

            def reader():
                result["data"], result["how"] = recv_until_close(s, limit=BULK + 64)

            t = threading.Thread(target=reader)
            t.start()
            s.sendall(up)
            s.shutdown(socket.SHUT_WR)
            t.join(60 * SLOW)
            s.close()
            data = result["data"]
            assert result["how"] == "eof", (forward, result["how"])
            assert len(data) == BULK + 40, (forward, len(data))
            assert hashlib.sha256(data[:BULK]).digest() == hashlib.sha256(
                pattern(b"down", BULK)).digest(), forward
            assert data[BULK:BULK + 32] == hashlib.sha256(up).digest(), forward
            assert int.from_bytes(data[BULK + 32:], "big") == BULK
            d.assert_no_leak(base)
        b.close()

        a = unix_service("A")
        with daemon([("a", "net.tcp://+/A", a.addr)], forward=forward) as d:
            s = d.connect(timeout=60)
            big = [os.urandom(3 << 20), os.urandom(5 << 20 | 17), b"small"]
            assert session(s, "net.tcp://h/A", big) == [b"A:" + p for p in big], forward
            s.close()
        a.close()


def test_sessions_followed_and_the_pool_reused():
    """Three clients one after the other share one backend connection;
    a pooled connection to one socket file never serves another's route
    (the pool is keyed by the path)."""
    for forward in FORWARD_METHODS:
        a, b = unix_service("A"), unix_service("B")
        with daemon([("a", "net.tcp://+/A", a.addr), ("b", "net.tcp://+/B", b.addr)],
                    forward=forward) as d:
            base = d.sockets()
            for i in range(3):
                s = d.connect()
                assert session(s, "net.tcp://h/A", [b"call %d" % i]) == [b"A:call %d" % i]
                s.close()
            assert a.accepted == 1, a.accepted
            assert [conn for conn, _ in a.sessions] == [1, 1, 1]
            d.wait_log("backend connection pooled")
            d.assert_no_leak(base + 1)
            # B's route finds A's connection in the pool and must not take it
            s = d.connect()
            r = Reader(s)
            assert session(s, "net.tcp://h/B", reader=r) == [b"B:hello"]
            assert session(s, "net.tcp://h/A", reader=r) == [b"A:hello"]
            s.close()
            assert b.accepted == 1 and len(b.sessions) == 1, (b.accepted, b.sessions)
            assert a.accepted == 1 and len(a.sessions) == 4, (a.accepted, a.sessions)
        a.close()
        b.close()


def test_client_reset_mid_stream_ends_the_service_connection():
    """A unix socket has no reset: a client's reset reaches the service as
    the end of its stream (nettcpd closes its side at once), and the
    service's next write fails; nothing is left open."""
    events = {}

    def backend(c, be):
        read_preamble(c)
        c.sendall(b"\x0b")
        while True:
            try:
                chunk = c.recv(65536)
            except ConnectionResetError:
                events["read"] = "reset"
                break
            if not chunk:
                events["read"] = "eof"
                break
        try:
            for _ in range(100):
                c.sendall(b"x" * 65536)
            events["write"] = "ok"
        except (BrokenPipeError, ConnectionResetError) as e:
            events["write"] = type(e).__name__

    for forward in FORWARD_METHODS:
        events.clear()
        b = Backend(backend, path=sock_path("reset.sock"))
        with Daemon(extra_global=PIPE, routes=[("r", "net.tcp://+/", b.addr)],
                    forward=forward) as d:
            base = d.sockets()
            s = d.connect()
            s.sendall(preamble("net.tcp://h/x"))
            assert recv_exact(s, 1) == b"\x0b"
            s.sendall(os.urandom(100000))
            reset(s)
            wait_for(lambda: "write" in events, what="the service noticed")
            assert events["read"] in ("eof", "reset"), events
            assert events["write"] in ("BrokenPipeError", "ConnectionResetError"), events
            d.wait_log("aborted (Connection reset by peer)")
            d.assert_no_leak(base)
        b.close()


def test_tls_terminate_to_a_unix_backend():
    """TLS ends at nettcpd; the service on the socket file reads the clear
    preamble and a followed session, byte for byte."""
    test_tls.make_pki()
    a = unix_service("A")
    with test_tls.daemon_with(test_tls.tls_route("secure", "net.tcp://+/Secure", a.addr)) as d:
        base = d.sockets()
        t = test_tls.upgrade(d, "net.tcp://localhost/Secure/Calc")
        r = Reader(t)
        assert r.record()[0] == 0x0B
        payload = os.urandom(1 << 20)
        t.sendall(sized_envelope(payload))
        assert r.record() == (0x06, b"A:" + payload)
        t.sendall(b"\x07")
        assert r.record()[0] == 0x07
        t.close()
        assert a.sessions[0][1] == preamble("net.tcp://localhost/Secure/Calc")
        d.wait_log("TLS handshake done")
        d.assert_no_leak(base + 1)      # the service's connection is pooled
    a.close()


def test_missing_and_refused_socket_files():
    """No socket file, and a socket file no service listens on: the client
    gets EndpointUnavailable and the log says which and why."""
    missing = sock_path("missing.sock")
    stale = sock_path("stale.sock")
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(stale)        # bound, never listening: what a dead service leaves
    with daemon([("m", "net.tcp://+/M", f"unix:{missing}"),
                 ("s", "net.tcp://+/S", f"unix:{stale}")]) as d:
        base = d.sockets()
        expect_fault(d, "net.tcp://h/M")
        d.wait_log(f"backend unix:{missing}: connect: No such file or directory "
                   "(no socket file: is the service running?)")
        expect_fault(d, "net.tcp://h/S")
        d.wait_log(f"backend unix:{stale}: connect: Connection refused "
                   "(no service listens on the socket file)")
        d.assert_no_leak(base)
    left.close()
    os.unlink(stale)


def test_permissions_say_who_may_be_the_backend():
    """nettcpd connects as the user it drops to: a socket file in a
    directory that user cannot search, or one it may not write, is refused
    with EndpointUnavailable and a log line that says what to fix; made
    reachable, the same file serves."""
    if os.geteuid() != 0:
        print("note: test_permissions_say_who_may_be_the_backend needs root; not run")
        return
    pwd.getpwnam("nobody")
    locked = tempfile.mkdtemp(prefix="nettcpd-unix-perm-")
    a = Backend(handler=wcf_service(), name="A", path=os.path.join(locked, "a.sock"))
    a.sessions, a.eofs = [], 0
    os.chmod(locked, 0o000)
    d = daemon([("a", "net.tcp://+/A", a.addr)], extra="user = nobody")
    with d:
        assert "running as user nobody" in d.log(), d.log()
        expect_fault(d, "net.tcp://h/A")
        d.wait_log(f"backend {a.addr}: connect: Permission denied (the user "
                   "nettcpd runs as must have write permission on the socket file "
                   "and search permission on each directory above it)")
        os.chmod(locked, 0o755)
        os.chmod(a.path, 0o700)     # searchable now, but the file is root's alone
        expect_fault(d, "net.tcp://h/A")
        wait_for(lambda: d.log().count("Permission denied") == 2, what="a second refusal")
        os.chmod(a.path, 0o777)
        s = d.connect()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        s.close()
        assert a.accepted == 1, a.accepted
    a.close()
    shutil.rmtree(locked, ignore_errors=True)


def test_full_backlog_gets_a_fault_not_a_hang():
    """A service that never accepts: once its backlog is full, a client
    gets EndpointUnavailable at once, not after connect_timeout."""
    path = sock_path("stuck.sock")
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stuck.bind(path)
    stuck.listen(1)
    queued = []
    while len(queued) < 64:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(path)
        except BlockingIOError:
            c.close()
            break
        queued.append(c)
    assert len(queued) < 64, "the backlog never filled"
    with daemon([("s", "net.tcp://+/S", f"unix:{path}")], extra="connect_timeout = 60s") as d:
        base = d.sockets()
        started = time.time()
        expect_fault(d, "net.tcp://h/S", timeout=60)
        assert time.time() - started < 10 * SLOW, time.time() - started
        d.wait_log(f"backend unix:{path}: connect: Resource temporarily unavailable "
                   "(the service's listen backlog is full: it is not accepting connections)")
        d.assert_no_leak(base)
    for c in queued:
        c.close()
    stuck.close()
    os.unlink(path)


def test_reload_moves_a_route_between_socket_files():
    """A reload that keeps a route's socket file leaves its pinned stream
    alone; one that moves it to another file closes the stream, and the
    route's next client reaches the new service."""
    from test_reload_policy import pinned_stream_across_reloads
    pinned_stream_across_reloads(Backend(name="A", path=sock_path("ra.sock")),
                                 Backend(name="B", path=sock_path("rb.sock")))


def test_probe_a_unix_service():
    """nettcp-probe reaches a unix service as nettcpd does: the Via is
    acknowledged; without -v it refuses; a missing file is a connect
    failure (exit 3)."""
    from test_probe import ACKED, CONNECT, USAGE, probe
    a = unix_service("A")
    rc, out, _ = probe("-v", "net.tcp://h/A", a.addr)
    assert rc == ACKED and "routed and acknowledged" in out, (rc, out)
    assert a.sessions[0][1] == preamble("net.tcp://h/A")
    rc, out, _ = probe(a.addr)
    assert rc == USAGE and "a unix: target needs -v VIA" in out, (rc, out)
    a.close()
    rc, out, _ = probe("-v", "net.tcp://h/A", a.addr)
    assert rc == CONNECT and "No such file or directory" in out, (rc, out)


def test_config_errors_name_file_and_line():
    """-t refuses what cannot be a unix backend, by FILE:LINE: a relative
    path, no path, an abstract name, a path longer than sun_path; and a
    unix socket where nettcpd listens."""
    long_path = "/" + "p" * 107        # 108 bytes: no room for the NUL
    ok_path = "/" + "p" * 106          # 107 bytes: the longest there is
    # backend takes a list: the error names the value, then its member
    cases = [
        ("unix:run/calc.sock", "unix socket path must be absolute"),
        ("unix:", "no path after 'unix:'"),
        ("unix:@calc", "abstract unix socket names are not supported"),
        (f"unix:{long_path}", "unix socket path is 108 bytes long, longer than "
         "the system's 107"),
    ]
    for value, why in cases:
        path, r = nettcpd_check(f"[global]\nlisten = 127.0.0.1:{free_port()}\n\n"
                                f"[a]\nvia = net.tcp://+/A\nbackend = {value}\n")
        assert r.returncode != 0, (value, r.stdout)
        want = f"{path}:6: bad backend '{value}': bad backend member '{value}': {why}"
        assert want in r.stderr, (want, r.stderr)
    path, r = nettcpd_check(f"[global]\nlisten = 127.0.0.1:{free_port()}\n\n"
                            f"[a]\nvia = net.tcp://+/A\nbackend = unix:{ok_path}\n")
    assert r.returncode == 0, r.stderr
    path, r = nettcpd_check("[global]\nlisten = unix:/run/nettcpd.sock\n")
    assert r.returncode != 0
    assert (f"{path}:2: bad listen address 'unix:/run/nettcpd.sock': a unix socket "
            "is not accepted here, only as a backend") in r.stderr, r.stderr


if __name__ == "__main__":
    try:
        run_tests(globals())
    finally:
        shutil.rmtree(SOCKDIR, ignore_errors=True)
