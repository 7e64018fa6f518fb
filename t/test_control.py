"""The control socket ([global] control): processes register Via prefixes
at runtime, for as long as their control connection lives.  Registration
routes new clients at once; a close or a kill -9 takes the routes away at
once without cutting a session in flight; SO_PEERCRED decides who may
register; a prefix held by a static route or another registrant is
refused; a prefix under a tls = terminate route inherits its TLS (a
handoff there is refused); a reload keeps registrations, and one whose
prefix the file now holds is REVOKED; limits, timeouts, garbage and an
oversized message are answered and closed; LIST and STATS.  Real daemon,
real SOCK_SEQPACKET sockets."""

import os
import pwd
import grp
import signal
import stat
import socket
import subprocess
import sys
import textwrap
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, Backend, Daemon, fault_record,  # noqa: E402
                          free_port, preamble, recv_until_close, run_tests,
                          wait_for)
from test_sessions import Reader, session, wcf_service  # noqa: E402

CTL_MSG_MAX = 4096


class Control:
    """A control connection, speaking the protocol line by line."""

    def __init__(self, path, hello=True):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.settimeout(10 * SLOW)
        self.s.connect(path)
        self.tag = 0
        self.pending = []     # REVOKED and the like, read between replies
        if hello:
            ok = self.ask("HELLO {} 1")
            assert ok[-1].startswith(f"OK {self.tag} 1 nettcpd/"), ok

    def send(self, text):
        self.s.send(text.encode() if isinstance(text, str) else text)

    def recv(self):
        data = self.s.recv(65536)
        return data.decode() if data else None

    def ask(self, fmt, *args):
        """Send fmt with the next tag; the lines up to its OK or ERR."""
        self.tag += 1
        self.send(fmt.format(self.tag, *args))
        lines = []
        while True:
            line = self.recv()
            assert line is not None, ("closed", lines)
            words = line.split(" ")
            if words[0] in ("OK", "ERR") and words[1] == str(self.tag):
                return lines + [line]
            if words[0] in ("ROUTE", "STAT") and words[1] == str(self.tag):
                lines.append(line)
            else:
                self.pending.append(line)

    def register(self, via, backend):
        return self.ask("REGISTER {} " + via + " proxy " + backend)[-1]

    def closed(self):
        """Whether the daemon closed this connection (reads what is left)."""
        try:
            while True:
                if self.s.recv(65536) == b"":
                    return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True

    def close(self):
        self.s.close()


def stats(c):
    """STATS as a dict of name to value (text)."""
    return dict(line.split(" ")[2:] for line in c.ask("STATS {}")[:-1])


def daemon(routes=(), extra="", workers=2, **kw):
    d = Daemon(routes, extra_global=f"workers = {workers}\n" + extra, **kw)
    d.control = os.path.join(d.dir, "control.sock")
    with open(d.config) as f:
        text = f.read()
    with open(d.config, "w") as f:
        f.write(text.replace("[global]\n", f"[global]\ncontrol = {d.control}\n", 1))
    return d


def routed(d, via):
    """One session for via: the name of the service that answered, or the
    fault name, or the reason it failed."""
    s = d.connect()
    try:
        r = Reader(s)
        s.sendall(preamble(via))
        t, payload = r.record()
        if t == 0x08:
            return "fault:" + payload.decode().rsplit("/", 1)[-1]
        if t != 0x0B:
            return f"record {t}"
        s.sendall(b"\x06\x01x")
        t, reply = r.record()
        return reply.decode().split(":")[0] if t == 0x06 else f"record {t}"
    finally:
        s.close()


def service(name):
    b = Backend(handler=wcf_service(), name=name)
    b.sessions = []
    b.eofs = 0
    return b


def test_register_routes_and_close_unregisters():
    """A registration routes new clients at once; its close makes them get
    EndpointNotFound at once, and a session in flight goes on: followed
    (the default) or pinned (follow_sessions = off), which a reload that
    drops a static route would reset."""
    svc = service("REG")
    for extra in ("", "follow_sessions = off\n"):
        with daemon(extra=extra) as d:
            assert routed(d, "net.tcp://h/app/x") == "fault:EndpointNotFound"
            c = Control(d.control)
            ok = c.register("net.tcp://+/app/", svc.addr)
            assert ok == f"OK {c.tag} 1", ok
            assert routed(d, "net.tcp://h/app/x") == "REG"
            # a session in flight across the unregistration
            s = d.connect()
            r = Reader(s)
            s.sendall(preamble("net.tcp://h/app/y"))
            assert r.record()[0] == 0x0B
            c.close()
            d.wait_log("unregistered net.tcp://+/app/")
            wait_for(lambda: routed(d, "net.tcp://h/app/x") == "fault:EndpointNotFound",
                     what="the route gone")
            s.sendall(b"\x06\x05after")
            t, reply = r.record()
            assert (t, reply) == (0x06, b"REG:after"), (extra, t, reply, d.log())
            s.sendall(b"\x07")
            assert r.record()[0] == 0x07
            s.close()
    svc.close()


def test_rolling_restart_same_prefix():
    """A service restarted instance by instance: A registers, a session is
    in flight on A when A's registration goes and B registers the same
    prefix to another backend.  New clients go to B; A's session runs on
    (followed or pinned), though its route's name is B's route's name now:
    a route is the same across generations only under one registration.
    Both are counted under that one name, as the access log says."""
    a, b = service("A"), service("B")
    for extra in ("", "follow_sessions = off\n"):
        with daemon(extra=extra) as d:
            ca = Control(d.control)
            assert ca.register("net.tcp://+/roll/", a.addr).startswith("OK")
            s = d.connect()
            r = Reader(s)
            s.sendall(preamble("net.tcp://h/roll/x"))
            assert r.record()[0] == 0x0B
            ca.close()
            d.wait_log("unregistered net.tcp://+/roll/")
            cb = Control(d.control)
            assert cb.register("net.tcp://+/roll/", b.addr).startswith("OK")
            assert routed(d, "net.tcp://h/roll/y") == "B"
            s.sendall(b"\x06\x05after")
            t, reply = r.record()
            assert (t, reply) == (0x06, b"A:after"), (extra, t, reply, d.log())
            s.sendall(b"\x07")
            assert r.record()[0] == 0x07
            s.close()
            cb.close()
            assert "reg:net.tcp://+/roll" in d.log(), d.log()
    a.close()
    b.close()


REGISTRANT = textwrap.dedent("""
    import socket, sys, time
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(sys.argv[1])
    s.send(b"HELLO 1 1"); assert s.recv(4096).startswith(b"OK 1 1 ")
    s.send(("REGISTER 2 " + sys.argv[2] + " proxy " + sys.argv[3]).encode())
    print(s.recv(4096).decode(), flush=True)
    time.sleep(600)
""")


def registrant(path, via, backend, user=None):
    """A python process holding a registration; returns it and its answer."""
    def drop():
        if user is not None:
            pw = pwd.getpwnam(user)
            os.setgid(pw.pw_gid)
            os.setgroups(os.getgrouplist(user, pw.pw_gid))
            os.setuid(pw.pw_uid)
    # another uid may not reach this interpreter (a home directory's)
    python = "/usr/bin/python3" if user is not None else sys.executable
    p = subprocess.Popen([python, "-c", REGISTRANT, path, via, backend],
                         stdout=subprocess.PIPE, text=True, preexec_fn=drop)
    return p, p.stdout.readline().strip()


def test_ok_means_every_worker_routes():
    """Right after OK to REGISTER a client is routed, right after OK to
    UNREGISTER it is not: 200 rounds over 4 workers, no waiting."""
    svc = service("OK")
    with daemon(workers=4) as d:
        c = Control(d.control)
        wrong = 0
        for i in range(200):
            ok = c.register("net.tcp://+/ok", svc.addr)
            wrong += routed(d, "net.tcp://h/ok") != "OK"
            c.ask("UNREGISTER {} " + ok.split()[2])
            wrong += routed(d, "net.tcp://h/ok") != "fault:EndpointNotFound"
        assert wrong == 0, f"{wrong} of 400 clients routed by the old generation"
        c.close()
    svc.close()


def test_kill9_registrant():
    """kill -9 of the registering process takes its routes away at once."""
    svc = service("K9")
    with daemon() as d:
        p, ok = registrant(d.control, "net.tcp://+/k9", svc.addr)
        assert ok == "OK 2 1", ok
        assert routed(d, "net.tcp://h/k9") == "K9"
        p.kill()
        p.wait()
        d.wait_log("unregistered net.tcp://+/k9")
        # the workers take the new generation at their loop's next turn
        wait_for(lambda: routed(d, "net.tcp://h/k9") == "fault:EndpointNotFound",
                 what="the route gone")
    svc.close()


def open_to_all(d):
    """Let another uid reach the socket (the test's directory is 0700)."""
    os.chmod(d.dir, 0o755)


def test_uid_authorisation():
    """Only root registers by default; another uid is refused, named in the
    answer and the log; allow_users by name, allow_groups by group."""
    if os.getuid() != 0:
        print("(as root only: registrants run as nobody)")
        return
    svc = service("AU")
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    with daemon(extra="control_mode = 0666\n") as d:
        open_to_all(d)
        p, answer = registrant(d.control, "net.tcp://+/n", svc.addr, user="nobody")
        assert answer == f"ERR 2 denied uid {nobody.pw_uid} may not register " \
                         "(allow_users, allow_groups)", answer
        p.kill(), p.wait()
        d.wait_log(f"uid {nobody.pw_uid} may not register")
        assert routed(d, "net.tcp://h/n") == "fault:EndpointNotFound"
        c = Control(d.control)       # root: always
        assert c.register("net.tcp://+/root", svc.addr).startswith("OK")
        c.close()
    for extra in ("allow_users = nobody\n", f"allow_groups = {group}\n",
                  f"allow_users = {nobody.pw_uid}\n"):
        with daemon(extra="control_mode = 0666\n" + extra) as d:
            open_to_all(d)
            p, answer = registrant(d.control, "net.tcp://+/n", svc.addr, user="nobody")
            assert answer == "OK 2 1", (extra, answer)
            assert routed(d, "net.tcp://h/n") == "AU"
            p.kill(), p.wait()
    svc.close()


def test_conflicts():
    """A static route's prefix, and another registrant's, are refused."""
    a, b = service("A"), service("B")
    with daemon([("calc", "net.tcp://+/calc", a.addr)]) as d:
        c1, c2 = Control(d.control), Control(d.control)
        err = c1.register("net.tcp://+/calc", b.addr)
        assert err == f"ERR {c1.tag} conflict net.tcp://+/calc is held by " \
                      "static route [calc]", err
        # the same prefix written otherwise is the same prefix
        err = c1.register("NET.TCP://+/Calc/", b.addr)
        assert err.startswith(f"ERR {c1.tag} conflict"), err
        # ids go to registrations made, never to refused ones
        assert c1.register("net.tcp://+/svc", b.addr) == f"OK {c1.tag} 1"
        err = c2.register("net.tcp://+/svc", a.addr)
        assert err == f"ERR {c2.tag} conflict net.tcp://+/svc is held by " \
                      "registered route [reg:net.tcp://+/svc]", err
        # deeper under a static route: allowed, and the registration wins
        assert c2.register("net.tcp://+/calc/deep", b.addr).startswith("OK")
        assert routed(d, "net.tcp://h/calc/deep/x") == "B"
        assert routed(d, "net.tcp://h/calc/other") == "A"
        # bad input: a via that is not net.tcp, a bad backend
        assert c2.register("http://h/x", b.addr).startswith(f"ERR {c2.tag} via ")
        assert c2.register("net.tcp://+/y", "nohost").startswith(f"ERR {c2.tag} backend ")
        c1.close(), c2.close()
    a.close(), b.close()


def test_tls_terminate_policy():
    """Under a tls = terminate static route a handoff registration is
    refused (ERR tls); a proxy one inherits the route's TLS: the client's
    upgrade is terminated with the route's certificate."""
    import test_tls
    test_tls.make_pki()
    a, b = service("A"), service("B")
    route = test_tls.tls_route("secure", "net.tcp://+/secure", a.addr)
    with daemon(extra="\n" + route) as d:
        c = Control(d.control)
        err = c.ask("REGISTER {} net.tcp://+/secure/h handoff")[-1]
        assert err == f"ERR {c.tag} tls handoff refused: the covering route " \
                      "[secure] terminates TLS", err
        assert c.register("net.tcp://+/secure/p", b.addr).startswith("OK")
        t = test_tls.upgrade(d, "net.tcp://localhost/secure/p/x")
        r = Reader(t)
        assert r.record()[0] == 0x0B
        t.sendall(b"\x06\x01x")
        assert r.record() == (0x06, b"B:x")
        t.close()
        assert b.sessions and b.sessions[-1][1].endswith(b"\x0c")
        c.close()
    a.close(), b.close()


def take(c):
    """The next HANDOFF on c: (handoff id, reg id, bytes, the client's socket)."""
    msg, fds, _, _ = socket.recv_fds(c.s, 8192, 1)
    line, _, data = msg.partition(b"\n")
    words = line.decode().split(" ")
    assert words[0] == "HANDOFF" and len(fds) == 1, (msg[:80], fds)
    assert int(words[3]) == len(data), (words, len(data))
    return int(words[1]), int(words[2]), data, socket.socket(fileno=fds[0])


def test_handoff_registration():
    """A handoff registration gets the client's socket and its exact bytes;
    after TAKEN nettcpd holds nothing; VALIDATE says yes for its Vias; a
    registrant that closes before TAKEN leaves no client unanswered."""
    with daemon() as d:
        base = len(d.fds())
        c = Control(d.control)
        assert c.ask("REGISTER {} net.tcp://+/hand handoff")[-1] == f"OK {c.tag} 1"
        assert c.ask("LIST {}")[0] == f"ROUTE {c.tag} handoff reg:net.tcp://+/hand net.tcp://+/hand " \
                                      f"handoff 0 {os.getpid()} 0"
        assert c.ask("VALIDATE {} 1 net.tcp://x/hand/y")[-1] == f"OK {c.tag} yes"
        s = d.connect()
        s.sendall(preamble("net.tcp://h/hand/svc") + b"\x06\x03abc")
        hid, rid, data, fd = take(c)
        assert rid == 1 and data.startswith(preamble("net.tcp://h/hand/svc")), data
        c.send(f"TAKEN {hid}")
        fd.setblocking(True)
        fd.sendall(b"\x0b")
        assert s.recv(1) == b"\x0b"
        s.sendall(b"more")
        got = data[len(preamble("net.tcp://h/hand/svc")):]
        while len(got) < 5 + 4:
            got += fd.recv(100)
        assert got == b"\x06\x03abcmore", got
        s.close(), fd.close()
        wait_for(lambda: len(d.fds()) == base + 1, what="only the control connection left")
        # a second client, not taken: the registrant goes away
        s = d.connect()
        s.sendall(preamble("net.tcp://h/hand/x"))
        hid, _, _, fd = take(c)
        fd.close()
        c.close()
        data, _ = recv_until_close(s)
        assert data == fault_record("EndpointUnavailable"), data
        s.close()
        assert routed(d, "net.tcp://h/hand/x") == "fault:EndpointNotFound"
        wait_for(lambda: len(d.fds()) == base, what=f"descriptors back to {base}")


def sighup(d):
    before = d.log().count("SIGHUP received")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.log().count("SIGHUP received") > before, what="the reload")


def test_reload_keeps_and_revokes():
    """A reload keeps registrations; one that adds a static route with a
    registered prefix revokes that registration (REVOKED, a warning)."""
    a, b = service("A"), service("B")
    with daemon([("a", "net.tcp://+/a", a.addr)]) as d:
        c = Control(d.control)
        assert c.register("net.tcp://+/r", b.addr) == f"OK {c.tag} 1"
        assert c.register("net.tcp://+/s", b.addr) == f"OK {c.tag} 2"
        sighup(d)
        d.wait_log("reloaded")
        assert routed(d, "net.tcp://h/r") == "B"
        with open(d.config, "a") as f:
            f.write(f"\n[took]\nvia = net.tcp://+/r\nbackend = {a.addr}\n")
        sighup(d)
        d.wait_log("reload: registration 1 of uid")
        line = c.recv()
        assert line.startswith("REVOKED 1 conflict "), line
        wait_for(lambda: routed(d, "net.tcp://h/r") == "A", what="the file's route")
        assert routed(d, "net.tcp://h/s") == "B"
        # the revoked id is gone from this connection; the other stays
        assert c.ask("UNREGISTER {} 1")[-1].startswith(f"ERR {c.tag} unknown")
        # an OK means every worker has the change: no wait here
        assert c.ask("UNREGISTER {} 2")[-1] == f"OK {c.tag}"
        assert routed(d, "net.tcp://h/s") == "fault:EndpointNotFound"
        c.close()
    a.close(), b.close()


def test_limits_and_garbage():
    """Limits, the HELLO deadline, garbage and an oversized message: each
    answered ERR (and closed where it says so); the daemon serves on."""
    svc = service("L")
    extra = ("control_max_registrations = 2\ncontrol_max_connections = 3\n"
             "control_timeout = 300ms\n")
    with daemon(extra=extra) as d:
        c = Control(d.control)
        assert c.register("net.tcp://+/1", svc.addr).startswith("OK")
        assert c.register("net.tcp://+/2", svc.addr).startswith("OK")
        err = c.register("net.tcp://+/3", svc.addr)
        assert err.startswith(f"ERR {c.tag} limit control_max_registrations"), err
        c2, c3 = Control(d.control), Control(d.control)
        c4 = Control(d.control, hello=False)
        assert c4.recv() == "ERR 0 limit control_max_connections reached for this uid"
        assert c4.closed()
        c2.close(), c3.close(), c4.close()
        wait_for(lambda: stats(c)["control_connections"] == "1",
                 what="the closes seen")
        late = Control(d.control, hello=False)
        assert late.recv() == "ERR 0 state no HELLO within control_timeout"
        assert late.closed()
        for bad, want in ((b"x" * (CTL_MSG_MAX + 1), "ERR 0 size message too long"),
                          (b"HELLO  1 1", "ERR 0 syntax leading, trailing or doubled space"),
                          (b"\x00\xff\x01", "ERR 0 syntax byte not printable ASCII in a token"),
                          (b"LIST 5", "ERR 5 state HELLO first"),
                          (b"HELLO 7 2", "ERR 7 version this nettcpd speaks version 1")):
            g = Control(d.control, hello=False)
            g.send(bad)
            assert g.recv() == want, (bad[:20], want)
            assert g.closed(), bad[:20]
            g.close()
        # a repeated HELLO is answered but not fatal
        assert c.ask("HELLO {} 1")[-1] == f"ERR {c.tag} state HELLO repeated"
        assert routed(d, "net.tcp://h/1") == "L"
        c.close()
        d.wait_log("no HELLO within control_timeout")
    svc.close()


def test_peer_that_does_not_read_is_closed():
    """Requests whose answers are never read: once its queue is full the
    peer is closed (its registration with it), and the daemon serves on."""
    svc = service("R")
    with daemon([("calc", "net.tcp://+/calc", svc.addr)]) as d:
        c = Control(d.control)
        assert c.register("net.tcp://+/r", svc.addr).startswith("OK")
        sent = 0
        try:
            for sent in range(1, 100001):
                c.send(f"LIST {sent}")
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        d.wait_log("does not read its answers; closed")
        assert sent < 100000, "never closed"
        wait_for(lambda: routed(d, "net.tcp://h/r") == "fault:EndpointNotFound",
                 what="its registration gone")
        assert routed(d, "net.tcp://h/calc") == "R"
        c.close()
    svc.close()


def test_list_and_stats():
    """LIST shows static and registered routes, owners and sessions in
    progress; STATS the process counters; VALIDATE the route of a Via."""
    a, b = service("A"), service("B")
    with daemon([("calc", ["net.tcp://+/calc", "net.tcp://h:9/c2"], a.addr)]) as d:
        c = Control(d.control)
        assert c.register("net.tcp://*/reg", b.addr) == f"OK {c.tag} 1"
        s = d.connect()
        r = Reader(s)
        s.sendall(preamble("net.tcp://h/reg/x"))
        assert r.record()[0] == 0x0B
        lines = c.ask("LIST {}")
        t = c.tag
        assert lines[-1] == f"OK {t} 3", lines
        assert sorted(lines[:-1]) == sorted([
            f"ROUTE {t} static calc net.tcp://+/calc {a.addr} - - 0",
            f"ROUTE {t} static calc net.tcp://h:9/c2 {a.addr} - - 0",
            f"ROUTE {t} proxy reg:net.tcp://*/reg net.tcp://*/reg {b.addr} 0 {os.getpid()} 1",
        ]), lines
        s.close()
        stats_now = stats(c)
        assert stats_now["registrations_proxy"] == "1", stats_now
        assert stats_now["control_connections"] == "1", stats_now
        assert int(stats_now["sessions"]) >= 1, stats_now
        assert c.ask("VALIDATE {} 1 net.tcp://x/reg/y")[-1] == f"OK {c.tag} yes"
        assert c.ask("VALIDATE {} 1 net.tcp://x/calc")[-1] == f"OK {c.tag} no"
        assert c.ask("VALIDATE {} 2 net.tcp://x/reg")[-1] == f"OK {c.tag} no"
        c.close()
    a.close(), b.close()


def test_churn_no_leak():
    """100 registrants registering and dropping while clients connect: no
    crash, every client answered, no descriptor left behind."""
    svc = service("C")
    with daemon() as d:
        base = len(d.fds())
        stop = threading.Event()
        seen = {"C": 0, "fault:EndpointNotFound": 0, "other": 0}

        def clients():
            while not stop.is_set():
                r = routed(d, "net.tcp://h/churn/x")
                seen[r if r in seen else "other"] += 1

        threads = [threading.Thread(target=clients) for _ in range(2)]
        for th in threads:
            th.start()
        for i in range(100):
            c = Control(d.control)
            assert c.register("net.tcp://+/churn", svc.addr).startswith("OK")
            if i % 2:
                c.ask("UNREGISTER {} " + c.register("net.tcp://+/c" + str(i), svc.addr).split()[2])
            c.close()
        stop.set()
        for th in threads:
            th.join()
        assert seen["other"] == 0 and seen["C"] + seen["fault:EndpointNotFound"] > 0, seen
        wait_for(lambda: len(d.fds()) == base, what=f"descriptors back to {base}")
        c = Control(d.control)
        assert c.ask("LIST {}") == [f"OK {c.tag} 0"]
        assert stats(c)["registrations_proxy"] == "0"
        c.close()
    svc.close()


def test_metrics_and_access_log():
    """A registered route is counted in /metrics and written to the access
    log like a static one; the control gauges and request counters move."""
    import json
    import test_metrics
    svc = service("M")
    mport = free_port()
    d = daemon(extra=f"metrics = 127.0.0.1:{mport}\n")
    log = os.path.join(d.dir, "access.jsonl")
    with open(d.config) as f:
        text = f.read()
    with open(d.config, "w") as f:
        f.write(text.replace("[global]\n", f"[global]\naccess_log = {log}\n", 1))
    with d:
        c = Control(d.control)
        assert c.register("net.tcp://+/m", svc.addr) == f"OK {c.tag} 1"
        assert c.register("net.tcp://+/m", svc.addr).startswith("ERR")
        assert routed(d, "net.tcp://h/m/x") == "M"
        samples, _ = test_metrics.scrape(mport)
        v = test_metrics.v
        assert v(samples, "nettcpd_control_connections") == 1
        assert v(samples, "nettcpd_registrations", kind="proxy") == 1
        assert v(samples, "nettcpd_registrations", kind="handoff") == 0
        assert v(samples, "nettcpd_control_requests_total", verb="REGISTER",
                 result="ok") == 1
        assert v(samples, "nettcpd_control_requests_total", verb="REGISTER",
                 result="err") == 1
        assert v(samples, "nettcpd_control_requests_total", verb="HELLO",
                 result="ok") == 1
        wait_for(lambda: v(test_metrics.scrape(mport)[0],
                           "nettcpd_route_sessions_total", route="reg:net.tcp://+/m") == 1,
                 what="the registered route's session counted")
        c.close()
        wait_for(lambda: v(test_metrics.scrape(mport)[0],
                           "nettcpd_control_connections") == 0,
                 what="the control connection's close counted")
        # The registration goes with the connection, once the workers
        # have the generation without it: a moment after the gauge above.
        wait_for(lambda: v(test_metrics.scrape(mport)[0],
                           "nettcpd_registrations", kind="proxy") == 0,
                 what="the registration's drop counted")
    with open(log) as f:
        records = [json.loads(line) for line in f]
    assert [r["route"] for r in records] == ["reg:net.tcp://+/m"], records
    svc.close()


def check(text):
    """nettcpd -t on text: (exit status, stderr)."""
    d = Daemon(raw_config=text)
    r = subprocess.run([NETTCPD, "-t", "-c", d.config], capture_output=True,
                       text=True)
    return r.returncode, r.stderr.replace(d.config, "FILE")


def test_config_checks():
    """Each control key's bad value is an error at its line under -t."""
    good = ("[global]\ncontrol = /run/x.sock\ncontrol_mode = 0600\n"
            "control_group = root\nallow_users = root, 0\nallow_groups = root\n"
            "control_timeout = 2s\ncontrol_max_registrations = 5\n"
            "control_max_connections = 1\n")
    assert check(good) == (0, ""), check(good)
    for line, error in (
            ("control = rel.sock", "bad control 'rel.sock'"),
            ("control = /" + "x" * 120,
             "control '/" + "x" * 120 + "' is longer than a unix socket's 107 bytes"),
            ("control_mode = 999", "bad control_mode '999'"),
            ("control_mode = 01777", "bad control_mode '01777'"),
            ("control_group = no-such-group-x", "unknown group 'no-such-group-x' in control_group"),
            ("allow_users = root, no-such-user-x", "unknown user 'no-such-user-x' in allow_users"),
            ("allow_groups = no-such-group-x", "unknown group 'no-such-group-x' in allow_groups"),
            ("allow_users = ,", "empty allow_users"),
            ("control_timeout = 0", "bad control_timeout '0'"),
            ("control_max_registrations = 0", "bad control_max_registrations '0'"),
            ("control_max_connections = x", "bad control_max_connections 'x'")):
        status, err = check(f"[global]\nlisten = 127.0.0.1:1\n{line}\n")
        assert status == 1 and f"FILE:3: {error}" in err, (line, err)
    status, err = check("[global]\ncontrol = /a\ncontrol = /b\n")
    assert status == 1 and "FILE:3: duplicate key 'control' (first at line 2)" in err, err


def test_socket_file_mode_and_removal():
    """The socket has control_mode and control_group, is replaced if left
    over, and goes at exit; changing control needs a restart."""
    with daemon() as d:
        st = os.stat(d.control)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    assert not os.path.exists(d.control), "socket file left at exit"
    gid = grp.getgrnam("nogroup").gr_gid if os.getuid() == 0 else os.getgid()
    group = grp.getgrgid(gid).gr_name
    d = daemon(extra=f"control_mode = 0600\ncontrol_group = {group}\n")
    left = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    left.bind(d.control)                 # left by a nettcpd killed -9
    left.close()
    with d:
        st = os.stat(d.control)
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_gid == gid, st
        with open(d.config) as f:
            text = f.read()
        with open(d.config, "w") as f:
            f.write(text.replace("control_mode = 0600", "control_mode = 0660"))
        sighup(d)
        d.wait_log("'control_mode' changed, which takes a restart")
        Control(d.control).close()
    # a file that is no socket is never removed: nettcpd does not start
    d = daemon()
    open(d.control, "w").close()
    try:
        d.start()
        raise AssertionError("started over a regular file")
    except AssertionError as e:
        assert f"control {d.control}: Address already in use" in str(e), e
    assert os.path.isfile(d.control)


def test_binary_upgrade_keeps_the_socket_path():
    """SIGUSR2: the new process takes over the socket, the connection and
    its registration (test_handoff has the handoffs); the old one, drained,
    leaves both alone: the registrant's connection stays open and its route
    still routes, the file is still there, and ids go on from the old
    process's."""
    from test_upgrade import new_pid, stop_upgraded
    svc = service("U")
    d = daemon().start()
    pid = None
    try:
        c = Control(d.control)
        assert c.register("net.tcp://+/u", svc.addr) == f"OK {c.tag} 1"
        d.proc.send_signal(signal.SIGUSR2)
        pid = new_pid(d)
        d.wait_log(f"nettcpd[{pid}]: notice: binary upgrade: took over 1 "
                   "control connection, 1 registration")
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(10 * SLOW) == 0
        c.s.settimeout(0.5)       # closed() reads until then
        assert not c.closed(), "the registrant's connection was closed"
        c.s.settimeout(10 * SLOW)
        assert os.path.exists(d.control), "the old process removed the socket"
        assert routed(d, "net.tcp://h/u") == "U"
        n = Control(d.control)
        assert n.register("net.tcp://+/v", svc.addr) == f"OK {n.tag} 2"
        n.close()
        c.close()
        wait_for(lambda: routed(d, "net.tcp://h/u") != "U",
                 what="the route to go with its connection")
    finally:
        stop_upgraded(pid)
        d.stop()
    assert not os.path.exists(d.control)
    svc.close()


if __name__ == "__main__":
    run_tests(globals())
