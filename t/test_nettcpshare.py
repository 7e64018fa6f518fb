"""libnettcpshare and nettcpctl against a scripted control peer: the client
side of the control protocol (nettcpd(8) REGISTRATION) checked message
by message, including what a daemon may do that a client must survive --
a HANDOFF or REVOKED arriving before the reply to a request, ERR with tag
0, a message with descriptors it may not carry, a close at any point.
t/test_nettcpctl.py runs the same programs against the real daemon.

The service program is t/share/nts_accept.c, compiled here as a user
would: cc $(pkg-config --cflags --libs nettcpshare), with the build tree's
nettcpshare-uninstalled.pc first in PKG_CONFIG_PATH."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import NETTCPD, SLOW, SRCDIR, recv_exact, run_tests, wait_for  # noqa: E402

BUILDDIR = os.path.abspath(os.path.join(os.path.dirname(NETTCPD), ".."))
NETTCPCTL = os.path.join(BUILDDIR, "src", "nettcpctl")
WORK = tempfile.mkdtemp(prefix="nettcpshare-test-")


def build_service():
    """nts_accept, built against the library through pkg-config."""
    out = os.path.join(WORK, "nts_accept")
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(BUILDDIR, "src", "share"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "nettcpshare"],
                           env=env, check=True, capture_output=True, text=True).stdout.split()
    subprocess.run([os.environ.get("CC", "cc"), "-std=c11", "-Wall", "-Werror", "-o", out,
                    os.path.join(SRCDIR, "t", "share", "nts_accept.c")] + flags, check=True)
    return out


SERVICE = build_service()


class Peer:
    """A control socket whose one connection is served by script(conn),
    in a thread; what the script asserts is raised again by join()."""

    def __init__(self, script):
        self.path = os.path.join(tempfile.mkdtemp(dir=WORK), "control.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(self.path)
        self.sock.listen(4)
        self.sock.settimeout(10 * SLOW)
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script):
        try:
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(10 * SLOW)
                script(conn)
        except BaseException as e:  # noqa: B036 -- handed to join()
            self.error = e

    def join(self):
        self.thread.join(20 * SLOW)
        assert not self.thread.is_alive(), "the peer's script did not finish"
        self.sock.close()
        if self.error is not None:
            raise self.error


def recv_msg(conn):
    return conn.recv(65536).decode()


def hello(conn):
    msg = recv_msg(conn)
    tag, version = msg.split(" ")[1:]
    assert msg.startswith("HELLO ") and version == "1", msg
    conn.send(f"OK {tag} 1 nettcpd/test".encode())


def expect(conn, verb, *args):
    """The next request is VERB <tag> ARGS...; returns its tag."""
    got = recv_msg(conn).split(" ")
    assert got[0] == verb and got[2:] == list(args), got
    return got[1]


def wait_eof(conn):
    """The client closes (its registrations end with the connection)."""
    conn.settimeout(20 * SLOW)
    assert conn.recv(4096) == b""


def ctl(peer, *args, **kw):
    return subprocess.run([NETTCPCTL, "-s", peer.path] + list(args),
                          capture_output=True, text=True, timeout=30 * SLOW, **kw)


# ------------------------------------------------------------ the library

def test_handoff_validate_and_interleaved_messages():
    """HANDOFF and REVOKED sent before the replies they overtake are kept
    for nts_accept and nts_revoked; the client's socket arrives with its
    bytes exact, TAKEN names its handoff-id, and the socket works."""
    pre = bytes(range(256)) * 3 + b"\x0c"
    client, theirs = socket.socketpair()
    via = "net.tcp://+/Svc/"

    def script(conn):
        hello(conn)
        tag = expect(conn, "REGISTER", via, "handoff")
        conn.send(f"OK {tag} 41".encode())
        tag = expect(conn, "VALIDATE", "41", "net.tcp://h/Svc/a")
        # A client and a revocation overtake the reply.
        conn.send(b"REVOKED 40 conflict the file's [x] holds net.tcp://+/Old/")
        socket.send_fds(conn, [f"HANDOFF 9 41 {len(pre)}\n".encode() + pre], [theirs.fileno()])
        theirs.close()
        conn.send(f"OK {tag} yes".encode())
        tag = expect(conn, "VALIDATE", "41", "net.tcp://h/Other")
        conn.send(f"OK {tag} no".encode())
        assert recv_msg(conn) == "TAKEN 9"
        wait_eof(conn)

    peer = Peer(script)
    proc = subprocess.Popen([SERVICE, peer.path, via, "1", "net.tcp://h/Svc/a",
                             "net.tcp://h/Other"], stdout=subprocess.PIPE, text=True)
    with client:
        client.settimeout(10 * SLOW)
        assert recv_exact(client, 1) == b"\x0b"
        client.sendall(b"echo me" * 1000)
        assert recv_exact(client, 7000) == b"echo me" * 1000
    out, _ = proc.communicate(timeout=20 * SLOW)
    peer.join()
    assert proc.returncode == 0, out
    assert out.splitlines() == [
        "registered 41",
        "validate net.tcp://h/Svc/a yes",
        "validate net.tcp://h/Other no",
        "revoked 40 conflict: the file's [x] holds net.tcp://+/Old/",
        "client 41 " + pre.hex(),
    ], out


def test_refusals_and_a_hostile_peer():
    """ERR (with the request's tag or tag 0) fails the call with the
    daemon's reason; a reply for another tag, or a message carrying a
    descriptor it may not, is a protocol error, never a crash."""
    cases = [
        ("ERR {tag} conflict prefix held by static route [calc]",
         "refused conflict: prefix held by static route [calc]"),
        ("ERR 0 size message too long", "refused size: message too long"),
        ("OK 999999 7", "refused nettcpd answered tag 999999, not 2"),
        ("OK {tag} 0", "refused nettcpd answered REGISTER with the id 0"),
        ("FD", "refused nettcpd sent a message this library cannot read (OK, 1 descriptors)"),
    ]
    for reply, want in cases:
        def script(conn, reply=reply):
            hello(conn)
            tag = expect(conn, "REGISTER", "net.tcp://+/A", "handoff")
            if reply == "FD":
                with open(os.devnull) as f:
                    socket.send_fds(conn, [f"OK {tag} 5".encode()], [f.fileno()])
            else:
                conn.send(reply.format(tag=tag).encode())
            wait_eof(conn)

        peer = Peer(script)
        out = subprocess.run([SERVICE, peer.path, "net.tcp://+/A", "1"], capture_output=True,
                             text=True, timeout=20 * SLOW).stdout
        peer.join()
        assert out.strip() == want, (reply, out)


def test_silent_daemon_times_out():
    """A daemon that never answers HELLO: nts_open gives up (10 s) with
    a reason instead of hanging the service's start."""
    def script(conn):
        recv_msg(conn)
        wait_eof(conn)

    peer = Peer(script)
    started = time.time()
    out = subprocess.run([SERVICE, peer.path, "net.tcp://+/A", "1"], capture_output=True,
                         text=True, timeout=30 * SLOW).stdout
    peer.join()
    assert out.strip() == "refused nettcpd did not answer within 10 s", out
    assert 9 < time.time() - started < 20 * SLOW


# ------------------------------------------------------------ nettcpctl

def registering(vias, then=None):
    """A peer that accepts each (via, backend) registration, then runs then."""
    def script(conn):
        hello(conn)
        for i, (via, backend) in enumerate(vias):
            tag = expect(conn, "REGISTER", via, "proxy", backend)
            conn.send(f"OK {tag} {100 + i}".encode())
        if then:
            then(conn)
        else:
            wait_eof(conn)
    return Peer(script)


def test_register_runs_the_command_and_passes_its_status():
    """Two registrations, then the command: the control socket is not
    among its descriptors (close-on-exec), the registrations last until it
    exits (the connection closes then), and its status is nettcpctl's."""
    pairs = [("net.tcp://+/A", "127.0.0.1:9001"), ("net.tcp://+/B", "unix:/run/b.sock")]
    peer = registering(pairs)
    fds = os.path.join(WORK, "fds")
    r = ctl(peer, "register", "--via", pairs[0][0], "--backend", pairs[0][1],
            "--via", pairs[1][0], "--backend", pairs[1][1], "--",
            "sh", "-c", f'for f in /proc/$$/fd/*; do readlink "$f"; done >{fds}; exit 7')
    peer.join()
    assert r.returncode == 7, r
    with open(fds) as f:
        held = f.read()
    assert "socket:" not in held and "anon_inode" not in held, held


def test_refused_registration_does_not_run_the_command():
    def then(conn):
        pass

    def script(conn):
        hello(conn)
        tag = expect(conn, "REGISTER", "net.tcp://+/A", "proxy", "127.0.0.1:1")
        conn.send(f"OK {tag} 1".encode())
        tag = expect(conn, "REGISTER", "net.tcp://+/B", "proxy", "127.0.0.1:2")
        conn.send(f"ERR {tag} denied uid 65534 may not register".encode())
        wait_eof(conn)

    peer = Peer(script)
    ran = os.path.join(WORK, "ran")
    r = ctl(peer, "register", "--via", "net.tcp://+/A", "--backend", "127.0.0.1:1",
            "--via", "net.tcp://+/B", "--backend", "127.0.0.1:2", "--", "touch", ran)
    peer.join()
    assert r.returncode == 1, r
    assert r.stderr == "nettcpctl: register net.tcp://+/B: denied: uid 65534 may not register\n", r
    assert not os.path.exists(ran)

    # No daemon at all: exit 3, the command not run either.
    r = subprocess.run([NETTCPCTL, "-s", os.path.join(WORK, "none.sock"), "register",
                        "--via", "net.tcp://+/A", "--backend", "127.0.0.1:1", "--", "touch", ran],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "No such file" in r.stderr, r
    assert not os.path.exists(ran)


def test_signals_are_forwarded_and_a_close_is_survived():
    """SIGTERM to nettcpctl reaches the command (which exits 42 from its
    trap); a command killed by a signal makes it exit 128 + that signal;
    a revocation and the daemon's close are said on stderr while the
    command runs on."""
    ready = os.path.join(WORK, "ready")
    for trap, want in (('trap "exit 42" TERM; ', 42), ("", 128 + signal.SIGTERM)):
        if os.path.exists(ready):
            os.unlink(ready)
        peer = registering([("net.tcp://+/A", "127.0.0.1:1")])
        proc = subprocess.Popen([NETTCPCTL, "-s", peer.path, "register", "--via", "net.tcp://+/A",
                                 "--backend", "127.0.0.1:1", "--", "sh", "-c",
                                 f"{trap}touch {ready}; while :; do sleep 0.05; done"],
                                stderr=subprocess.PIPE, text=True)
        wait_for(lambda: os.path.exists(ready), 10, "the command to start")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20 * SLOW)
        peer.join()
        assert proc.returncode == want, (trap, proc.returncode, err)

    def then(conn):
        conn.send(b"REVOKED 100 conflict a reloaded static route holds net.tcp://+/A")
        # and the daemon stops: the connection closes.

    peer = registering([("net.tcp://+/A", "127.0.0.1:1")], then)
    r = ctl(peer, "register", "--via", "net.tcp://+/A", "--backend", "127.0.0.1:1", "--",
            "sh", "-c", "sleep 1; exit 5")
    peer.join()
    assert r.returncode == 5, r
    assert r.stderr.splitlines() == [
        "nettcpctl: nettcpd revoked registration 100: conflict: a reloaded static route "
        "holds net.tcp://+/A",
        "nettcpctl: nettcpd closed the control connection; the registrations are gone, "
        "sh keeps running",
    ], r.stderr


def test_list_and_stats_output():
    def script(conn):
        hello(conn)
        tag = expect(conn, "LIST")
        conn.send(f"ROUTE {tag} static calc net.tcp://+/calc/ 127.0.0.1:9001 - - 2".encode())
        conn.send(f"ROUTE {tag} proxy reg-7 net.tcp://+/a/ 127.0.0.1:1,127.0.0.1:2 "
                  f"1000 4242 0".encode())
        conn.send(f"ROUTE {tag} handoff reg-8 net.tcp://+/b/ handoff 0 17 5".encode())
        conn.send(f"OK {tag} 3".encode())
        wait_eof(conn)

    peer = Peer(script)
    r = subprocess.run([NETTCPCTL, "-s", peer.path, "list"], capture_output=True, text=True,
                       timeout=30)
    peer.join()
    assert r.returncode == 0, r
    assert [line.split() for line in r.stdout.splitlines()] == [
        ["KIND", "NAME", "VIA", "TARGET", "UID", "PID", "SESSIONS"],
        ["static", "calc", "net.tcp://+/calc/", "127.0.0.1:9001", "-", "-", "2"],
        ["proxy", "reg-7", "net.tcp://+/a/", "127.0.0.1:1,127.0.0.1:2", "1000", "4242", "0"],
        ["handoff", "reg-8", "net.tcp://+/b/", "handoff", "0", "17", "5"],
    ], r.stdout

    def stats(conn):
        hello(conn)
        tag = expect(conn, "STATS")
        conn.send(f"STAT {tag} registrations 2".encode())
        conn.send(f"STAT {tag} handoffs 31".encode())
        conn.send(f"OK {tag} 2".encode())
        wait_eof(conn)

    peer = Peer(stats)
    r = subprocess.run([NETTCPCTL, "-s", peer.path, "stats"], capture_output=True, text=True,
                       timeout=30)
    peer.join()
    assert r.returncode == 0 and r.stdout == "registrations 2\nhandoffs 31\n", r


def test_socket_from_config_and_usage():
    """-c CONFIG's [global] control names the socket; a config without
    one, -s with -c, or a register without its -- COMMAND: usage errors."""
    peer = Peer(lambda conn: (hello(conn), expect(conn, "STATS"),
                              conn.send(f"OK {1 + 1} 0".encode()), wait_eof(conn)))
    conf = os.path.join(WORK, "with-control.ini")
    with open(conf, "w") as f:
        f.write(f"[global]\nlisten = 127.0.0.1:1\ncontrol = {peer.path}   ; the socket\n")
    r = subprocess.run([NETTCPCTL, "-c", conf, "stats"], capture_output=True, text=True,
                       timeout=30)
    peer.join()
    assert r.returncode == 0, r

    bare = os.path.join(WORK, "without-control.ini")
    with open(bare, "w") as f:
        f.write("[global]\nlisten = 127.0.0.1:1\n")
    r = subprocess.run([NETTCPCTL, "-c", bare, "list"], capture_output=True, text=True)
    assert r.returncode == 3 and "no control socket" in r.stderr, r
    for args in (["-s", "x", "-c", conf, "list"], ["register", "--via", "v", "--backend", "b"],
                 ["register", "--via", "v", "--", "true"], ["register", "--", "true"],
                 ["list", "extra"], ["frobnicate"], []):
        r = subprocess.run([NETTCPCTL] + args, capture_output=True, text=True)
        assert r.returncode == 2 and "usage" in r.stderr, (args, r)
    r = subprocess.run([NETTCPCTL, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("nettcpctl "), r


if __name__ == "__main__":
    run_tests(globals())
