"""nettcpctl and libnettcpshare against the real daemon's control socket:
a service registered by `nettcpctl register -- COMMAND` gets clients while
COMMAND runs, and none once it is gone (its exit, SIGTERM, or nettcpctl
killed with -9); COMMAND's status is nettcpctl's; a registration that the
daemon refuses (a static route's prefix, a uid not allowed) exits 1 before
COMMAND runs; `list` shows static and registered routes with their owners
and sessions; a C service built with pkg-config takes handed-off clients
with their preamble bytes exact and asks VALIDATE.

Each refusal is tried with a touch file as COMMAND, in a directory anyone
may write: the file must not appear."""

import os
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, Daemon, fault_record,  # noqa: E402
                          preamble, recv_exact, run_tests, wait_for)
from test_sessions import Reader, service  # noqa: E402
from test_upgrade import new_pid, stop_upgraded  # noqa: E402

BUILDDIR = os.path.abspath(os.path.join(os.path.dirname(NETTCPD), ".."))
NETTCPCTL = os.path.join(BUILDDIR, "src", "nettcpctl")
NMF_SERVICE = os.path.join(BUILDDIR, "bench", "nmf-service")
WORK = tempfile.mkdtemp(prefix="nettcpctl-test-")
os.chmod(WORK, 0o777)


def control_daemon(routes=(), extra=""):
    """A daemon with a control socket (its path in d.control)."""
    path = os.path.join(tempfile.mkdtemp(dir=WORK), "control.sock")
    os.chmod(os.path.dirname(path), 0o755)
    d = Daemon(routes, extra_global=f"control = {path}\n{extra}")
    d.control = path
    return d


def ctl(d, *args, user=None, timeout=30):
    pre = ["setpriv", f"--reuid={user}", "--regid=nogroup", "--clear-groups"] if user else []
    return subprocess.run(pre + [NETTCPCTL, "-s", d.control] + list(args),
                          capture_output=True, text=True, timeout=timeout * SLOW)


def register(d, via, backend, *command, **kw):
    return subprocess.Popen([NETTCPCTL, "-s", d.control, "register", "--via", via,
                             "--backend", backend, "--"] + list(command),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def answer(d, via):
    """The first record a client of via gets: 0x0B, or the fault's bytes."""
    with d.connect(timeout=10 * SLOW) as c:
        c.sendall(preamble(via))
        first = recv_exact(c, 1)
        if first != b"\x08":
            return first
        rest = b""
        while True:
            try:
                chunk = c.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            rest += chunk
        return first + rest


def routes(d, **kw):
    r = ctl(d, "list", **kw)
    assert r.returncode == 0, r
    lines = [line.split() for line in r.stdout.splitlines()]
    assert lines[0] == ["KIND", "NAME", "VIA", "TARGET", "UID", "PID", "SESSIONS"], r.stdout
    return lines[1:]


def test_registered_service_gets_clients_while_its_command_runs():
    """The bench's net.tcp service, run by nettcpctl register: a client of
    the registered Via is acknowledged by it; SIGTERM to nettcpctl stops
    the service, nettcpctl exits with its status, and the next client of
    the Via gets EndpointNotFound."""
    # A unix socket: no other test can take the address meanwhile.
    addr = "unix:" + os.path.join(WORK, "nmf-service.sock")
    via = "net.tcp://localhost/Registered/Calc"
    with control_daemon() as d:
        assert answer(d, via) == fault_record("EndpointNotFound")
        p = register(d, "net.tcp://+/Registered/", addr, NMF_SERVICE, "-l", addr)
        wait_for(lambda: p.poll() is not None or answer(d, via) == b"\x0b", 10,
                 "the registered service's Ack")
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=10 * SLOW)
        assert p.returncode == 0, (p.returncode, err)
        wait_for(lambda: answer(d, via) == fault_record("EndpointNotFound"), 5,
                 "EndpointNotFound once the command is gone")


def test_status_passthrough_and_kill_9():
    """COMMAND's exit status is nettcpctl's; nettcpctl killed with -9
    drops the route at once although its COMMAND still runs."""
    with control_daemon() as d:
        p = register(d, "net.tcp://+/Seven/", "127.0.0.1:1", "sh", "-c", "exit 7")
        p.communicate(timeout=10 * SLOW)
        assert p.returncode == 7

        b = service("killed")
        pidfile = os.path.join(WORK, "sleeper.pid")
        p = register(d, "net.tcp://+/Killed/", b.addr, "sh", "-c",
                     f"echo $$ >{pidfile}; exec sleep 60")
        via = "net.tcp://localhost/Killed/x"
        wait_for(lambda: answer(d, via) == b"\x0b", 10, "the registration")
        wait_for(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0, 5, "COMMAND")
        with open(pidfile) as f:
            sleeper = int(f.read())
        p.kill()
        p.wait()
        try:
            wait_for(lambda: answer(d, via) == fault_record("EndpointNotFound"), 5,
                     "the route gone after kill -9")
            os.kill(sleeper, 0)   # COMMAND itself was not touched
        finally:
            os.kill(sleeper, signal.SIGKILL)
            b.close()


def test_refusals_exit_1_without_running_the_command():
    """A prefix a static route holds: conflict.  A uid not in allow_users
    (nobody, with a socket anyone may open; run unprivileged, the test's
    own uid): denied, naming the uid.  Either way exit 1 at once, and
    COMMAND never runs."""
    touched = os.path.join(WORK, "touched")
    root = os.geteuid() == 0
    user, uid = ("nobody", 65534) if root else (None, os.geteuid())
    b = service("static")
    with control_daemon([("calc", "net.tcp://+/Calc/", b.addr)], "control_mode = 0666\n" + (
            "" if root else "allow_users = nobody\n")) as d:
        if root:
            r = ctl(d, "register", "--via", "net.tcp://+/Calc/", "--backend", "127.0.0.1:1",
                    "--", "touch", touched)
            assert r.returncode == 1 and "conflict" in r.stderr, r
            assert not os.path.exists(touched)
        else:
            print("not root: the conflict case is run as root only (CI), where root may "
                  "register and nobody may not")

        r = ctl(d, "register", "--via", "net.tcp://+/Nobody/", "--backend", "127.0.0.1:1",
                "--", "touch", touched, user=user)
        assert r.returncode == 1 and "denied" in r.stderr and str(uid) in r.stderr, r
        assert not os.path.exists(touched)
        # The static route still serves.
        assert answer(d, "net.tcp://localhost/Calc/x") == b"\x0b"
    b.close()


def test_list_shows_static_and_registered_routes():
    """list, through -c CONFIG: the static route with "-" for its owner,
    the registration with nettcpctl's uid and pid, the sessions in
    progress on each."""
    b = service("listed")
    with control_daemon([("calc", "net.tcp://+/Calc/", b.addr)]) as d:
        p = register(d, "net.tcp://+/Listed/", b.addr, "sleep", "60")
        wait_for(lambda: answer(d, "net.tcp://localhost/Listed/x") == b"\x0b", 10,
                 "the registration")
        with d.connect() as c:
            c.sendall(preamble("net.tcp://localhost/Listed/x"))
            assert Reader(c).record()[0] == 0x0B
            wait_for(lambda: any(r[0] == "proxy" and r[6] == "1" for r in routes(d)), 5,
                     "one session in progress on the registered route")
            r = subprocess.run([NETTCPCTL, "-c", d.config, "list"], capture_output=True,
                               text=True, timeout=30)
            rows = [line.split() for line in r.stdout.splitlines()][1:]
            static = [x for x in rows if x[0] == "static"]
            reg = [x for x in rows if x[0] == "proxy"]
            assert static == [["static", "calc", "net.tcp://+/calc", b.addr, "-", "-", "0"]], rows
            assert len(reg) == 1 and reg[0][2:] == ["net.tcp://+/listed", b.addr, "0",
                                                   str(p.pid), "1"], rows
        p.terminate()
        p.wait()
        wait_for(lambda: [r[0] for r in routes(d)] == ["static"], 5, "the registration gone")
        st = ctl(d, "stats")
        assert st.returncode == 0 and st.stdout, st
        for line in st.stdout.splitlines():
            name, value = line.split(" ")
            assert name and value.isdigit(), line
    b.close()


def test_revocation_and_the_daemon_stopping_leave_the_command_running():
    """A reload keeps the registration; a reload whose file now holds the
    same prefix revokes it (the file wins), and nettcpctl says so; the
    daemon stopping closes the connection, and nettcpctl says that too.
    COMMAND runs on through both and its status is nettcpctl's."""
    a, b = service("file"), service("registered")
    go = os.path.join(WORK, "go")
    d = control_daemon().start()
    p = register(d, "net.tcp://+/Took/", b.addr, "sh", "-c",
                 f"while [ ! -e {go} ]; do sleep 0.05; done; exit 3")
    try:
        via = "net.tcp://localhost/Took/x"
        wait_for(lambda: answer(d, via) == b"\x0b" and len(b.sessions) == 1, 10,
                 "the registration")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("generation 2")
        assert answer(d, via) == b"\x0b" and len(b.sessions) == 2
        with open(d.config, "a") as f:
            f.write(f"\n[took]\nvia = net.tcp://+/Took/\nbackend = {a.addr}\n")
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("generation 3")
        wait_for(lambda: answer(d, via) == b"\x0b" and len(a.sessions) == 1, 5,
                 "the file's route")
        assert d.stop() == 0
        open(go, "w").close()
        _, err = p.communicate(timeout=10 * SLOW)
    finally:
        if p.poll() is None:
            p.kill()
        d.stop()
        a.close(), b.close()
    assert p.returncode == 3, (p.returncode, err)
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith(
        "nettcpctl: nettcpd revoked registration ") and ": conflict: " in lines[0], err
    assert lines[1] == ("nettcpctl: nettcpd closed the control connection; the registrations "
                        "are gone, sh keeps running"), err


def test_binary_upgrade_passes_the_registration_on():
    """SIGUSR2, then SIGTERM to the old process: nettcpctl's control
    connection and registration pass to the new process and nettcpctl
    notices nothing (no line on stderr); the new process routes the Via,
    lists nettcpctl as its owner, and drops it when COMMAND ends."""
    b = service("upgraded")
    go = os.path.join(WORK, "go-upgrade")
    d = control_daemon().start()
    p = register(d, "net.tcp://+/Up/", b.addr, "sh", "-c",
                 f"while [ ! -e {go} ]; do sleep 0.05; done; exit 6")
    pid = None
    try:
        via = "net.tcp://localhost/Up/x"
        wait_for(lambda: answer(d, via) == b"\x0b", 10, "the registration")
        d.proc.send_signal(signal.SIGUSR2)
        pid = new_pid(d)
        d.wait_log(f"nettcpd[{pid}]: notice: binary upgrade: took over 1 control connection, "
                   "1 registration")
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(10 * SLOW) == 0
        sessions = len(b.sessions)
        assert answer(d, via) == b"\x0b" and len(b.sessions) == sessions + 1
        assert [(r[0], r[2], r[5]) for r in routes(d)] == [("proxy", "net.tcp://+/up", str(p.pid))]
        open(go, "w").close()
        _, err = p.communicate(timeout=10 * SLOW)
        assert p.returncode == 6 and err == "", (p.returncode, err)
        wait_for(lambda: answer(d, via) == fault_record("EndpointNotFound"), 5,
                 "the new process to drop the route")
    finally:
        if p.poll() is None:
            p.kill()
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        stop_upgraded(pid)
        b.close()


def test_c_service_takes_handed_off_clients():
    """t/share/nts_accept.c, built with pkg-config against the build
    tree's library: VALIDATE answers yes for its prefix and no for
    another; a client handed off to it arrives with its preamble bytes
    exact, is acknowledged by the service itself and echoed; so do 300
    more, one after another, Vias of every length up to 1.8 KB."""
    from test_nettcpshare import build_service
    svc = build_service()
    with control_daemon() as d:
        p = subprocess.Popen([svc, d.control, "net.tcp://+/Hand/", "1",
                              "net.tcp://localhost/Hand/x", "net.tcp://localhost/Other"],
                             stdout=subprocess.PIPE, text=True)
        first = p.stdout.readline()
        assert first.startswith("registered "), first
        assert p.stdout.readline() == "validate net.tcp://localhost/Hand/x yes\n"
        assert p.stdout.readline() == "validate net.tcp://localhost/Other no\n"
        sent = preamble("net.tcp://localhost/Hand/x")
        with d.connect(timeout=10 * SLOW) as c:
            c.sendall(sent)
            assert recv_exact(c, 1) == b"\x0b"
            c.sendall(b"x" * 100000)
            assert recv_exact(c, 100000) == b"x" * 100000
        out, _ = p.communicate(timeout=10 * SLOW)
        assert p.returncode == 0, out
        assert out == f"client {first.split()[1]} {sent.hex()}\n", out

        # 300 clients one after another, their Vias from 1 byte of path
        # to near NMF_MAX_VIA: each preamble arrives as it was sent.
        n = 300
        p = subprocess.Popen([svc, d.control, "net.tcp://+/Hand/", str(n)],
                             stdout=subprocess.PIPE, text=True)
        reg = p.stdout.readline().split()[1]
        for i in range(n):
            sent = preamble("net.tcp://localhost/Hand/" + "p" * (1 + i * 6) + f"/{i}")
            with d.connect(timeout=10 * SLOW) as c:
                c.sendall(sent)
                assert recv_exact(c, 1) == b"\x0b", i
            assert p.stdout.readline() == f"client {reg} {sent.hex()}\n", i
        p.wait(10 * SLOW)
        assert p.returncode == 0


if __name__ == "__main__":
    run_tests(globals())
