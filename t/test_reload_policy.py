"""What a reload does to connections opened before it.  A stream pinned to
its backend (a passed-through upgrade such as application/negotiate, which
nettcpd cannot follow) is closed when the reload changes its route's policy
(backend, TLS mode or certificate, or removes the route), and only then; a
preamble still being read is decided under the new generation; an unfollowed
stream lives at most pinned_timeout; and SIGHUPs close together are
coalesced so that the newest file always serves."""

import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, Backend, Daemon, fault_record,  # noqa: E402
                          free_port, preamble, recv_exact, recv_until_close, run_tests,
                          wait_for)
import test_tls  # noqa: E402


def write(d, routes, extra=""):
    """Rewrite the daemon's file; routes are (name, via, backend, lines)."""
    out = ["[global]", f"listen = 127.0.0.1:{d.port}", "log_level = debug",
           "workers = 2", extra, ""]
    for name, via, backend, lines in routes:
        out += [f"[{name}]", f"via = {via}", f"backend = {backend}", *lines, ""]
    tmp = d.config + ".new"
    with open(tmp, "w") as f:
        f.write("\n".join(out))
    os.replace(tmp, d.config)


def terminate():
    return ["tls = terminate", f"tls_cert = {test_tls.pki('server.pem')}",
            f"tls_key = {test_tls.pki('server.key')}"]


def started(routes, extra=""):
    d = Daemon(raw_config="")
    write(d, routes, extra)
    return d.start()


def reload(d, generation):
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log(f"reloaded {d.config}: generation {generation},")


def pinned(d, via, name):
    """A client whose upgrade the service accepted (the echo backend answers
    0B and its name): from here on nettcpd pipes the stream unread."""
    s = d.connect()
    s.sendall(preamble(via, upgrade="application/negotiate"))
    assert recv_exact(s, 1 + len(name)) == b"\x0b" + name.encode()
    s.sendall(b"ping")
    assert recv_exact(s, 4) == b"ping"
    return s


def closed_counts(d):
    return sum(int(n) for n in re.findall(
        r"closed (\d+) connections? pinned to routes whose policy changed", d.log()))


def accepted(d, base):
    wait_for(lambda: d.sockets() > base, what="the connection accepted")


def spare():
    """A second listen address for the first file, which the next one
    drops: the main thread closes it once every worker has taken the new
    generation, and says so."""
    return f"127.0.0.1:{free_port()}"


def taken_by_every_worker(d, addr):
    d.wait_log(f"no longer listening on {addr}")


def test_tightened_route_closes_its_pinned_streams_only():
    """/S passes its upgrades through and is switched to tls = terminate;
    /U stays as it was.  The stream pinned to /S is closed at the reload,
    with a count in the log; the one on /U goes on."""
    test_tls.make_pki()
    a, b = Backend(name="A"), Backend(name="B")
    routes = [("s", "net.tcp://+/S", a.addr, []), ("u", "net.tcp://+/U", b.addr, [])]
    d = started(routes)
    try:
        s = pinned(d, "net.tcp://h/S", "A")
        u = pinned(d, "net.tcp://h/U", "B")
        write(d, [("s", "net.tcp://+/S", a.addr, terminate()), routes[1]])
        started_at = time.time()
        reload(d, 2)
        s.settimeout(3 * SLOW)
        data, how = recv_until_close(s)
        took = time.time() - started_at
        assert data == b"" and how in ("eof", "reset"), (data, how)
        assert took < 2 * SLOW, f"closed only after {took:.2f} s"
        wait_for(lambda: closed_counts(d) == 1, what="the count in the log")
        u.sendall(b"still")
        assert recv_exact(u, 5) == b"still"
        # and the tightened route now asks for TLS
        c = d.connect()
        c.sendall(preamble("net.tcp://h/S", upgrade="application/negotiate"))
        assert recv_until_close(c)[0] == fault_record("UpgradeInvalid")
        for x in (s, u, c):
            x.close()
    finally:
        status = d.stop()
    assert status == 0, f"nettcpd exited {status}:\n{d.log()}"
    a.close()
    b.close()


def pinned_stream_across_reloads(a, b):
    """A stream pinned to route [s] on a: a reload that adds another route
    leaves it alone; one that moves [s] to b closes it, counted in the log,
    and the route's next client reaches b.  Closes a and b."""
    d = started([("s", "net.tcp://+/S", a.addr, [])])
    try:
        s = pinned(d, "net.tcp://h/S", "A")
        write(d, [("s", "net.tcp://+/S", a.addr, []), ("n", "net.tcp://+/N", b.addr, [])])
        reload(d, 2)
        s.sendall(b"after")
        assert recv_exact(s, 5) == b"after"
        assert closed_counts(d) == 0
        write(d, [("s", "net.tcp://+/S", b.addr, [])])
        reload(d, 3)
        s.settimeout(3 * SLOW)
        assert recv_until_close(s)[0] == b""
        wait_for(lambda: closed_counts(d) == 1, what="the count in the log")
        s.close()
        s = pinned(d, "net.tcp://h/S", "B")
        s.close()
    finally:
        status = d.stop()
    assert status == 0, f"nettcpd exited {status}:\n{d.log()}"
    a.close()
    b.close()


def test_backend_change_closes_pinned_stream_and_unrelated_reload_does_not():
    """A reload that changes nothing of a route's policy (another route is
    added) leaves its pinned stream alone; one that moves its backend
    closes it."""
    pinned_stream_across_reloads(Backend(name="A"), Backend(name="B"))


def test_half_read_preamble_is_decided_under_the_new_generation():
    """The Via arrives, the reload moves the route to another backend, then
    Preamble End: the new backend gets the preamble.  And the Via arrives,
    the reload makes the route terminate TLS, then Preamble End: the client
    gets the fault the new policy gives a clear preamble."""
    test_tls.make_pki()
    a, b = Backend(name="A"), Backend(name="B")
    extra = spare()
    d = started([("h", "net.tcp://+/H", a.addr, []), ("t", "net.tcp://+/T", a.addr, [])],
                extra=f"listen = {extra}")
    try:
        base = d.sockets()
        h = d.connect()
        h.sendall(preamble("net.tcp://h/H", end=False))
        t = d.connect()
        t.sendall(preamble("net.tcp://h/T", end=False))
        accepted(d, base + 1)
        write(d, [("h", "net.tcp://+/H", b.addr, []),
                  ("t", "net.tcp://+/T", a.addr, terminate())])
        reload(d, 2)
        taken_by_every_worker(d, extra)
        h.sendall(b"\x0c")
        assert recv_exact(h, 2) == b"\x0bB"
        assert b.received and b.received[0].startswith(b"\x00\x01\x00\x01\x02")
        assert a.received == []
        t.sendall(b"\x0c")
        assert recv_until_close(t)[0] == fault_record("UpgradeInvalid")
        h.close()
        t.close()
    finally:
        status = d.stop()
    assert status == 0, f"nettcpd exited {status}:\n{d.log()}"
    a.close()
    b.close()


def test_preamble_inside_tls_on_a_changed_route_is_reset():
    """The TLS handshake of a terminating route is done, Preamble End not
    yet sent inside it; the reload moves the route's backend: the
    connection is reset, and nothing reaches either backend."""
    import ssl
    test_tls.make_pki()
    a, b = Backend(name="A"), Backend(name="B")
    extra = spare()
    d = started([("t", "net.tcp://+/T", a.addr, terminate())], extra=f"listen = {extra}")
    try:
        s = d.connect()
        s.sendall(preamble("net.tcp://localhost/T", upgrade="application/ssl-tls"))
        assert recv_exact(s, 1) == b"\x0a"
        t = test_tls.client_context().wrap_socket(s, server_hostname="localhost")
        write(d, [("t", "net.tcp://+/T", b.addr, terminate())])
        reload(d, 2)
        taken_by_every_worker(d, extra)
        try:
            t.sendall(b"\x0c")
            got = t.recv(16)
        except (OSError, ssl.SSLError):
            got = b""
        assert got == b"", got
        assert a.received == [] and b.received == []
        assert closed_counts(d) == 1
        t.close()
    finally:
        status = d.stop()
    assert status == 0, f"nettcpd exited {status}:\n{d.log()}"
    a.close()
    b.close()


def test_pinned_stream_lives_pinned_timeout():
    """pinned_timeout = 1s: a passed-through stream that keeps moving is
    closed after about a second; a followed session on the same daemon is
    not limited by it."""
    a = Backend(name="A")
    d = started([("s", "net.tcp://+/S", a.addr, [])], extra="pinned_timeout = 1s")
    try:
        # From before the stream's session starts, so that a slow setup
        # (under valgrind) does not eat into the second measured.
        began = time.time()
        s = pinned(d, "net.tcp://h/S", "A")
        f = d.connect()
        f.sendall(preamble("net.tcp://h/S"))
        assert recv_exact(f, 2) == b"\x0bA"
        closed = None
        while time.time() - began < 5 * SLOW:
            try:
                s.sendall(b"x")
                if recv_exact(s, 1) != b"x":
                    closed = time.time() - began
                    break
            except OSError:
                closed = time.time() - began
                break
            time.sleep(0.1)
        assert closed is not None, "the pinned stream outlived pinned_timeout"
        assert 0.7 < closed < 3 * SLOW, closed
        d.wait_log("pinned_timeout (1 s) expired")
        # the followed session is still served
        f.sendall(b"\x06\x02hi")
        assert recv_exact(f, 4) == b"\x06\x02hi"
        s.close()
        f.close()
    finally:
        status = d.stop()
    assert status == 0, f"nettcpd exited {status}:\n{d.log()}"
    a.close()


def test_pinned_timeout_checked_by_t():
    d = Daemon(raw_config="")
    write(d, [], extra="pinned_timeout = forever")
    r = subprocess.run([NETTCPD, "-t", "-c", d.config], capture_output=True, text=True)
    assert r.returncode == 1
    assert f"{d.config}:5: bad pinned_timeout 'forever'" in r.stderr, r.stderr
    write(d, [], extra="pinned_timeout = off")
    r = subprocess.run([NETTCPD, "-t", "-c", d.config], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def serves(d, via, name):
    s = d.connect()
    try:
        s.sendall(preamble(via))
        return recv_exact(s, 1 + len(name)) == b"\x0b" + name.encode()
    finally:
        s.close()


def every_worker_took_the_last(d, workers=2):
    """Both workers have the newest generation loaded: a new connection
    gets it whichever accepts it."""
    log = d.log()
    last = max((int(n) for n in re.findall(r"reloaded \S+: generation (\d+),", log)),
               default=None)
    return last is not None and len(re.findall(rf"took generation {last}\b", log)) == workers


def test_two_sighups_1ms_apart_apply_the_second_file():
    """File 1, SIGHUP, 1 ms, file 2, SIGHUP: with no third SIGHUP, file 2
    serves, each of 20 times.  File 1 has 5,000 routes, so that the second
    SIGHUP comes while the first is still being loaded and handed over."""
    a, b = Backend(name="A"), Backend(name="B")
    d = started([("x", "net.tcp://+/X", a.addr, [])])
    try:
        for i in range(20):
            first, second = (b, a) if i % 2 == 0 else (a, b)
            write(d, [("x", "net.tcp://+/X", first.addr, [])] +
                  [(f"f{i}_{k}", f"net.tcp://+/F{i}/{k}", first.addr, [])
                   for k in range(5000)])
            d.proc.send_signal(signal.SIGHUP)
            time.sleep(0.001)
            write(d, [("x", "net.tcp://+/X", second.addr, []),
                      (f"s{i}", f"net.tcp://+/S{i}", second.addr, [])])
            d.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: every_worker_took_the_last(d)
                     and serves(d, f"net.tcp://h/S{i}", second.name)
                     and serves(d, "net.tcp://h/X", second.name),
                     what=f"round {i}: the second file served")
    finally:
        status = d.stop()
    assert status == 0, f"nettcpd exited {status}:\n{d.log()}"
    a.close()
    b.close()


def test_a_storm_of_reloads_leaks_nothing_and_the_last_file_wins():
    """200 SIGHUPs as fast as they can be sent, each after a new file: the
    descriptors come back to where they were, and the last file serves
    (no backend pool: its idle connections would count)."""
    a, b = Backend(name="A"), Backend(name="B")
    nopool = "backend_pool = 0"
    d = started([("x", "net.tcp://+/X", a.addr, [])], extra=nopool)
    try:
        base = d.sockets()
        assert serves(d, "net.tcp://h/X", "A")
        for i in range(200):
            write(d, [("x", "net.tcp://+/X", (a if i % 2 else b).addr, []),
                      (f"r{i}", f"net.tcp://+/R{i}", a.addr, [])], extra=nopool)
            d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: every_worker_took_the_last(d)
                 and serves(d, "net.tcp://h/R199", "A")
                 and serves(d, "net.tcp://h/X", "A"), timeout=10,
                 what="the last file served")
        d.assert_no_leak(base)
        assert d.proc.poll() is None
    finally:
        status = d.stop()
    assert status == 0, f"nettcpd exited {status}:\n{d.log()}"
    a.close()
    b.close()


if __name__ == "__main__":
    run_tests(globals())
