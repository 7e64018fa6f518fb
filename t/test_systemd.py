"""Running under a service manager, or without one: socket activation by
the real systemd-socket-activate (the sockets it passes are served; one no
listen entry matches stops the start), sd_notify's READY, RELOADING and
STOPPING on a NOTIFY_SOCKET, and nettcpd -d with a pid file.  The parts
that need systemd-socket-activate, or a nettcpd built with libsystemd,
print SKIP without them; with neither, the whole file exits 77."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, WRAPPER, Daemon, free_port, run_tests,  # noqa: E402
                          wait_for)
from test_reload import reload  # noqa: E402
from test_sessions import service, session  # noqa: E402

ACTIVATE = shutil.which("systemd-socket-activate")


def with_libsystemd():
    r = subprocess.run(["ldd", NETTCPD], capture_output=True, text=True)
    return "libsystemd" in r.stdout


LIBSYSTEMD = with_libsystemd()


def skipped(what, why):
    print(f"SKIP: test_systemd: {what}: {why}")
    return True


def config_file(text):
    d = tempfile.mkdtemp(prefix="nettcpd-systemd-")
    path = os.path.join(d, "nettcpd.ini")
    with open(path, "w") as f:
        f.write(text)
    return d, path


class Activated:
    """systemd-socket-activate -l ADDR... nettcpd -c FILE.  It binds the
    addresses, and on the first connection execs nettcpd in its own place
    with them as LISTEN_FDS."""

    def __init__(self, addrs, path):
        self.log = os.path.join(os.path.dirname(path), "stderr.log")
        args = [ACTIVATE]
        for a in addrs:
            args += ["-l", a]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(args + WRAPPER + [NETTCPD, "-c", path],
                                         stdout=out, stderr=out)
        for a in addrs:
            wait_for(lambda: f"Listening on {a}" in self.text(), what=f"{a} bound")

    def text(self):
        with open(self.log, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10 * SLOW)


def test_socket_activation_serves_the_passed_sockets():
    if ACTIVATE is None:
        return skipped("socket activation", "no systemd-socket-activate")
    a = service("A")
    p1, p2, p3 = free_port(), free_port(), free_port()
    _, path = config_file(
        f"[global]\nlisten = 127.0.0.1:{p1}, 127.0.0.1:{p2}, 127.0.0.1:{p3}\n"
        f"log_level = debug\n\n[a]\nvia = net.tcp://+/A\nbackend = {a.addr}\n")
    act = Activated([f"127.0.0.1:{p1}", f"127.0.0.1:{p2}"], path)
    try:
        # the first client starts nettcpd, and waits in the passed socket's
        # backlog until it serves
        s = socket.create_connection(("127.0.0.1", p1), timeout=10 * SLOW)
        assert session(s, "net.tcp://localhost/A") == [b"A:hello"]
        s.close()
        wait_for(lambda: "started" in act.text(), what="nettcpd started")
        log = act.text()
        assert f"listening on 127.0.0.1:{p1} (socket handed over)" in log, log
        assert f"listening on 127.0.0.1:{p2} (socket handed over)" in log, log
        # an address no socket was passed for, nettcpd binds itself
        assert f"listening on 127.0.0.1:{p3}\n" in log, log
        assert "on listening sockets handed over" in log, log
        for port in (p2, p3):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            assert session(s, "net.tcp://localhost/A") == [b"A:hello"]
            s.close()
    finally:
        status = act.stop()
    assert status == 0, (status, act.text())
    a.close()


def test_a_passed_socket_no_listen_entry_matches_stops_the_start():
    if ACTIVATE is None:
        return skipped("socket activation", "no systemd-socket-activate")
    p1, stray = free_port(), free_port()
    _, path = config_file(f"[global]\nlisten = 127.0.0.1:{p1}\n")
    act = Activated([f"127.0.0.1:{p1}", f"127.0.0.1:{stray}"], path)
    try:
        # only to start nettcpd: it may refuse and close the socket, and
        # reset this connection, before connect() has even returned
        try:
            socket.create_connection(("127.0.0.1", p1), timeout=5).close()
        except ConnectionError:
            pass
        status = act.proc.wait(10 * SLOW)
    finally:
        act.stop()
    log = act.text()
    assert status == 1, (status, log)
    assert (f"the socket handed to nettcpd as descriptor 4 (127.0.0.1:{stray}) "
            f"matches no listen address of {path}") in log, log
    assert "started" not in log, log


class NotifySocket:
    """The service manager's end of NOTIFY_SOCKET."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="nettcpd-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(10 * SLOW)

    def next(self):
        """The next message, as a dict of its assignments."""
        msg = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in msg.split("\n") if "=" in line)


def test_sd_notify_ready_reloading_stopping():
    if not LIBSYSTEMD:
        return skipped("sd_notify", "nettcpd built without libsystemd")
    n = NotifySocket()
    a = service("A")
    d = Daemon(routes=[("a", "net.tcp://+/A", a.addr)],
               env=dict(os.environ, NOTIFY_SOCKET=n.path))
    d.start()
    try:
        m = n.next()
        assert m.get("READY") == "1", m
        assert m.get("STATUS") == "serving generation 1, 1 route", m
        # READY came once it serves
        s = d.connect()
        assert session(s, "net.tcp://localhost/A") == [b"A:hello"]
        s.close()
        reload(d)
        m = n.next()
        assert m.get("RELOADING") == "1", m
        m = n.next()
        assert m.get("READY") == "1" and m.get("STATUS") == \
            "serving generation 2, 1 route", m
        # a failed reload is reported, and the old generation serves on
        with open(d.config, "a") as f:
            f.write("no_such_key = 1\n")
        reload(d, want="failed")
        assert n.next().get("RELOADING") == "1"
        m = n.next()
        assert m.get("READY") == "1" and "reload failed" in m["STATUS"], m
        d.proc.send_signal(signal.SIGTERM)
        m = n.next()
        assert m.get("STOPPING") == "1", m
        assert d.proc.wait(10 * SLOW) == 0, d.log()
    finally:
        d.stop()
    a.close()


def alive(pid):
    """Running, and not a zombie left to an init that does not reap."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_daemonize_returns_once_serving_and_writes_the_pid_file():
    a, b = service("A"), service("B")
    port = free_port()
    work, path = config_file(
        f"[global]\nlisten = 127.0.0.1:{port}\npidfile = nettcpd.pid\n\n"
        f"[a]\nvia = net.tcp://+/A\nbackend = {a.addr}\n")
    # relative names (the file, the pid file) are taken from where it started
    r = subprocess.run(WRAPPER + [NETTCPD, "-d", "-c", "nettcpd.ini"], cwd=work,
                       capture_output=True, text=True, timeout=20 * SLOW)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert "-d: log = stderr: from here on the log goes to /dev/null" in r.stderr, r.stderr
    pidfile = os.path.join(work, "nettcpd.pid")
    with open(pidfile) as f:
        pid = int(f.read())
    try:
        assert alive(pid)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert os.path.basename(f.read().split(b"\0")[0]) == b"nettcpd"
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        assert os.getsid(pid) == pid, "not the leader of a session of its own"
        # it served before the parent returned: the first connection works
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert session(s, "net.tcp://localhost/A") == [b"A:hello"]
        s.close()
        # a reload, from /, still reads the file it was started with
        with open(path, "a") as f:
            f.write(f"\n[b]\nvia = net.tcp://+/B\nbackend = {b.addr}\n")
        os.kill(pid, signal.SIGHUP)

        def b_routed():
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                return session(s, "net.tcp://localhost/B") == [b"B:hello"]
            finally:
                s.close()
        wait_for(b_routed, what="the reload's new route")
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), 10, what="nettcpd -d to exit")
    assert not os.path.exists(pidfile), "SIGTERM left the pid file"
    a.close()
    b.close()


def test_daemonize_reports_a_failed_start():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    work, path = config_file(f"[global]\nlisten = 127.0.0.1:{port}\n"
                             f"pidfile = nettcpd.pid\n")
    r = subprocess.run(WRAPPER + [NETTCPD, "-d", "-c", path], cwd=work,
                       capture_output=True, text=True, timeout=20 * SLOW)
    taken.close()
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(work, "nettcpd.pid"))


if __name__ == "__main__":
    if ACTIVATE is None and not LIBSYSTEMD:
        print("SKIP: test_systemd: no systemd-socket-activate, and nettcpd "
              "built without libsystemd")
        sys.exit(77)
    run_tests(globals())
