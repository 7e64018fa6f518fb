"""Socket handoff (nettcpd(8), HANDOFF): a registrant on the control
socket registers a Via prefix with `handoff` and is passed each matching
client's socket with SCM_RIGHTS and the bytes nettcpd read from it.

1,000 clients handed off with byte-exact preambles (split writes and
bytes after Preamble End included); 64 MiB each way over a handed-off
socket with nettcpd out of the path; a registrant that never says TAKEN
(EndpointUnavailable after handoff_timeout), one that never reads its
control socket (EndpointUnavailable at once), one killed -9 with clients
in flight (every client answered, nettcpd's descriptors back to where they
were); VALIDATE; a reload while clients are handed off; the access log
record and the counts; a binary upgrade with a handoff waiting for TAKEN.
The registrant is Python's socket.recv_fds on a SOCK_SEQPACKET socket,
written from the protocol, not from the daemon's code."""

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, Daemon, fault_record, free_port, preamble,  # noqa: E402
                          recv_exact, recv_until_close, run_tests, wait_for)
from test_upgrade import new_pid, stop_upgraded  # noqa: E402

UNAVAILABLE = fault_record("EndpointUnavailable")
PREFIX = "net.tcp://localhost/handed/"
ACK = b"\x0b"


class Control:
    """One control connection, as the protocol (ctlproto.md) has it."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.settimeout(10 * SLOW)
        self.s.connect(path)
        self.tag = 0
        self.handoffs = []   # (id, reg, bytes, fd) read while awaiting a reply

    def send(self, text):
        self.s.send(text.encode())

    def recv(self):
        """One message: (text line, preamble bytes or None, fd or None)."""
        msg, fds, _, _ = socket.recv_fds(self.s, 8192, 1)
        if not msg:
            raise EOFError("control connection closed")
        if msg.startswith(b"HANDOFF "):
            line, _, rest = msg.partition(b"\n")
            return line.decode(), rest, fds[0] if fds else None
        assert not fds, msg
        return msg.decode(), None, None

    def request(self, verb, *args):
        """Send verb with a new tag; the reply lines (HANDOFFs met on the
        way are kept in self.handoffs)."""
        self.tag += 1
        self.send(" ".join([verb, str(self.tag)] + [str(a) for a in args]))
        lines = []
        while True:
            line, data, fd = self.recv()
            if line.startswith("HANDOFF "):
                self.handoffs.append(parse_handoff(line, data, fd))
                continue
            lines.append(line)
            words = line.split(" ")
            if words[0] in ("OK", "ERR") and words[1] == str(self.tag):
                return lines

    def hello(self):
        assert self.request("HELLO", 1)[-1].startswith(f"OK {self.tag} 1 nettcpd/")
        return self

    def register(self, via=PREFIX, mode="handoff"):
        reply = self.request("REGISTER", via, mode)[-1]
        assert reply.startswith(f"OK {self.tag} "), reply
        return int(reply.split(" ")[2])

    def close(self):
        self.s.close()


def parse_handoff(line, data, fd):
    _, hid, reg, n = line.split(" ")
    assert int(n) == len(data), (line, len(data))
    assert fd is not None, line
    return int(hid), int(reg), data, fd


class Registrant:
    """A handoff registrant on a thread of its own: each client it is
    handed is served by serve(sock, bytes) on a thread of its own; taken
    says whether it answers TAKEN (first), read whether it reads its
    control socket at all."""

    def __init__(self, d, serve=None, taken=True, read=True, via=PREFIX):
        self.ctl = Control(d.control).hello()
        self.reg = self.ctl.register(via)
        self.serve, self.taken, self.read = serve, taken, read
        self.got = []        # (id, bytes) of each handoff, in order
        self.held = []       # sockets kept without TAKEN
        self.lock = threading.Lock()
        self.stopped = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        if read:
            self.thread.start()

    def _loop(self):
        while not self.stopped:
            try:
                line, data, fd = self.ctl.recv()
            except (EOFError, OSError):
                return
            if not line.startswith("HANDOFF "):
                continue
            hid, reg, data, fd = parse_handoff(line, data, fd)
            assert reg == self.reg, (reg, self.reg)
            client = socket.socket(fileno=fd)
            with self.lock:
                self.got.append((hid, data))
            if not self.taken:
                self.held.append(client)
                continue
            self.ctl.send(f"TAKEN {hid}")
            if self.serve is not None:
                threading.Thread(target=self._serve, args=(client, data),
                                 daemon=True).start()
            else:
                client.close()

    def _serve(self, client, data):
        try:
            client.setblocking(True)
            self.serve(client, data)
        finally:
            client.close()

    def close(self):
        self.stopped = True
        self.ctl.close()
        for s in self.held:
            s.close()


def handoff_daemon(extra="", routes=(), **kw):
    d = Daemon(routes=routes, extra_global=f"control = {{CONTROL}}\n{extra}", **kw)
    d.control = os.path.join(d.dir, "control.sock")
    with open(d.config) as f:
        text = f.read().replace("{CONTROL}", d.control)
    with open(d.config, "w") as f:
        f.write(text)
    return d


def metrics_daemon(extra="", **kw):
    mport = free_port()
    d = handoff_daemon(extra=f"metrics = 127.0.0.1:{mport}\n{extra}", **kw)
    d.mport = mport
    return d


def handoffs(d, result):
    """nettcpd_handoffs_total{result} summed over routes."""
    with urllib.request.urlopen(f"http://127.0.0.1:{d.mport}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(int(n) for n in re.findall(
        r'^nettcpd_handoffs_total\{route="[^"]*",result="' + result + r'"\} (\d+)$',
        text, re.M))


def echo_preamble(client, data):
    """The registrant's answer: the bytes it was handed, then close."""
    client.sendall(data)


def test_thousand_handoffs_byte_exact():
    """1,000 clients, each a Via of its own, some in one write, some split
    in the middle of a record, some with an envelope after Preamble End:
    each registrant gets exactly the bytes its client sent, and the client
    reads them back over the socket it was handed; nettcpd holds nothing
    afterwards."""
    d = metrics_daemon(extra="handoff_max_pending = 1000")
    with d:
        reg = Registrant(d, serve=echo_preamble)
        base = d.sockets()

        def client(i):
            pre = preamble(f"{PREFIX}svc{i}/x.svc")
            if i % 3 == 1:
                pre += b"\x06\x05hello"   # an envelope sent with it
            s = d.connect()
            try:
                if i % 3 == 2:
                    cut = 9 + i % 20
                    s.sendall(pre[:cut])
                    time.sleep(0.002)
                    s.sendall(pre[cut:])
                else:
                    s.sendall(pre)
                got, how = recv_until_close(s)
            finally:
                s.close()
            assert (got, how) == (pre, "eof"), (i, got, how, pre)

        errors = []

        def run(lo, hi):
            try:
                for i in range(lo, hi):
                    client(i)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=run, args=(k * 125, (k + 1) * 125))
                   for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert len(reg.got) == 1000
        assert len({hid for hid, _ in reg.got}) == 1000, "handoff ids repeat"
        wait_for(lambda: handoffs(d, "taken") == 1000, what="1000 taken")
        assert handoffs(d, "timeout") + handoffs(d, "refused") + handoffs(d, "lost") == 0
        d.assert_no_leak(base)
        reg.close()


def test_bulk_both_ways():
    """64 MiB each way over a handed-off socket, at once: nettcpd is not in
    the data path, so its CPU time hardly moves."""
    size = 64 << 20

    def serve(client, data):
        client.sendall(ACK)
        sink = threading.Thread(target=lambda: recv_exact(client, size))
        sink.start()
        chunk = b"d" * (1 << 20)
        for _ in range(size // len(chunk)):
            client.sendall(chunk)
        sink.join()

    d = handoff_daemon()
    with d:
        reg = Registrant(d, serve=serve)
        cpu = d.cpu_seconds()
        s = d.connect(timeout=60)
        s.sendall(preamble(PREFIX + "bulk"))
        assert recv_exact(s, 1) == ACK
        up = threading.Thread(target=lambda: s.sendall(b"u" * size))
        up.start()
        got = recv_exact(s, size)
        up.join()
        assert len(got) == size and got.count(b"d") == size
        s.close()
        used = d.cpu_seconds() - cpu
        print(f"  64 MiB each way over a handed-off socket: nettcpd used "
              f"{used * 1000:.0f} ms of CPU")
        assert used < 0.5, used
        reg.close()


def test_never_taken_gets_unavailable_after_timeout():
    d = metrics_daemon(extra="handoff_timeout = 600ms")
    with d:
        reg = Registrant(d, taken=False)
        s = d.connect()
        began = time.time()
        s.sendall(preamble(PREFIX + "slow"))
        got, how = recv_until_close(s)
        waited = time.time() - began
        assert (got, how) == (UNAVAILABLE, "eof"), (got, how)
        assert waited >= 0.55, waited
        assert len(reg.got) == 1
        assert handoffs(d, "timeout") == 1
        d.wait_log("no TAKEN within handoff_timeout")
        reg.close()


def test_registrant_that_never_reads():
    """Its control socket's queue fills: the clients past it get the fault
    at once, without waiting for handoff_timeout, and nettcpd goes on
    serving other routes' clients meanwhile."""
    d = metrics_daemon(extra="handoff_timeout = 30s\nhandoff_max_pending = 100000")
    with d:
        reg = Registrant(d, read=False)
        clients = []
        for i in range(400):
            s = d.connect()
            s.sendall(preamble(f"{PREFIX}deaf{i}"))
            clients.append(s)
        wait_for(lambda: handoffs(d, "refused") > 0, what="a refusal")
        began = time.time()
        got, how = recv_until_close(clients[-1])
        assert (got, how) == (UNAVAILABLE, "eof"), (got, how)
        assert time.time() - began < 5 * SLOW
        refused = handoffs(d, "refused")
        assert 0 < refused < 400, refused
        d.wait_log("the registrant's queue is full")
        for s in clients:
            s.close()
        reg.close()


def test_max_pending_refuses_at_once():
    d = metrics_daemon(extra="handoff_timeout = 30s\nhandoff_max_pending = 3")
    with d:
        reg = Registrant(d, taken=False)
        held = []
        for i in range(3):
            s = d.connect()
            s.sendall(preamble(f"{PREFIX}held{i}"))
            held.append(s)
        wait_for(lambda: len(reg.got) == 3, what="3 handed off")
        s = d.connect()
        s.sendall(preamble(PREFIX + "fourth"))
        assert recv_until_close(s) == (UNAVAILABLE, "eof")
        assert handoffs(d, "refused") == 1
        for s in held:
            s.close()
        reg.close()


REGISTRANT = r"""
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
s.send(b"HELLO 1 1"); assert s.recv(4096).startswith(b"OK 1 ")
s.send(b"REGISTER 2 " + sys.argv[2].encode() + b" handoff")
assert s.recv(4096).startswith(b"OK 2 ")
print("registered", flush=True)
n = 0
held = []
while True:
    msg, fds, _, _ = socket.recv_fds(s, 8192, 1)
    n += 1
    held.append(fds[0])
    if n % 2:   # every other one taken, and held open
        s.send(b"TAKEN " + msg.split(b" ")[1])
    print("got", n, flush=True)
"""


def line_of(p, timeout=10.0):
    """The child's next line, or an AssertionError after timeout."""
    ready, _, _ = select.select([p.stdout], [], [], timeout * SLOW)
    assert ready, "the registrant said nothing"
    return p.stdout.readline().strip()


def test_registrant_killed_mid_dispatch():
    """A registrant that took some clients and not others is killed -9:
    each client not taken gets the fault, each taken one the close of its
    last holder; nettcpd's descriptors are back where they were, and the
    route is gone (EndpointNotFound)."""
    d = metrics_daemon(extra="handoff_timeout = 60s")
    with d:
        base = d.sockets()
        p = subprocess.Popen([sys.executable, "-c", REGISTRANT, d.control, PREFIX],
                             stdout=subprocess.PIPE, text=True)
        assert line_of(p) == "registered"
        clients = []
        for i in range(20):
            s = d.connect(timeout=10)
            s.sendall(preamble(f"{PREFIX}k{i}"))
            clients.append(s)
            try:
                assert line_of(p) == f"got {i + 1}"
            except AssertionError:
                p.kill()
                raise
        p.kill()
        p.wait()
        answers = [recv_until_close(s) for s in clients]
        for s in clients:
            s.close()
        faulted = sum(1 for a in answers if a == (UNAVAILABLE, "eof"))
        closed = sum(1 for a in answers if a in ((b"", "eof"), (b"", "reset")))
        assert faulted == 10 and closed == 10, answers
        assert handoffs(d, "lost") == 10 and handoffs(d, "taken") == 10
        d.assert_no_leak(base)
        s = d.connect()
        s.sendall(preamble(PREFIX + "after"))
        got, _ = recv_until_close(s)
        s.close()
        assert got == fault_record("EndpointNotFound"), got


def test_validate():
    """VALIDATE: yes exactly for a Via that routes to that registration
    now (the check a handed-off connection makes before carrying a session
    for another Via); no for another's, a static route's, an unrouted
    one's, and after UNREGISTER."""
    d = handoff_daemon(routes=[("static", "net.tcp://localhost/static/",
                                "127.0.0.1:9")])
    with d:
        a = Control(d.control).hello()
        ra = a.register(PREFIX + "a/")
        b = Control(d.control).hello()
        rb = b.register(PREFIX + "b/")

        def valid(via, reg=ra):
            reply = a.request("VALIDATE", reg, via)[-1]
            assert reply.split(" ")[:2] == ["OK", str(a.tag)], reply
            return reply.endswith(" yes")
        assert valid(PREFIX + "a/svc.svc")
        assert not valid(PREFIX + "b/svc.svc")
        assert valid(PREFIX + "b/svc.svc", rb)
        assert not valid("net.tcp://localhost/static/x")
        assert not valid("net.tcp://localhost/nowhere/x")
        assert a.request("UNREGISTER", ra)[-1] == f"OK {a.tag}"
        assert not valid(PREFIX + "a/svc.svc")
        b.close()
        a.close()


def test_reload_keeps_registration_and_pending_handoffs():
    """A SIGHUP while clients wait for their TAKEN: the registration and
    every handoff waiting live on; TAKEN after the reload is honoured and
    the clients are served; clients after it are handed off as before."""
    d = metrics_daemon(extra="handoff_timeout = 30s")
    with d:
        reg = Registrant(d, taken=False)
        clients = []
        for i in range(10):
            s = d.connect(timeout=10)
            s.sendall(preamble(f"{PREFIX}r{i}"))
            clients.append(s)
        wait_for(lambda: len(reg.got) == 10, what="10 handed off")
        os.kill(d.pid, signal.SIGHUP)
        d.wait_log("SIGHUP received: reloaded")
        for (hid, data), sock in zip(list(reg.got), list(reg.held)):
            reg.ctl.send(f"TAKEN {hid}")
            sock.sendall(data)
            sock.close()
        reg.held.clear()
        for i, s in enumerate(clients):
            assert recv_until_close(s) == (preamble(f"{PREFIX}r{i}"), "eof"), i
            s.close()
        wait_for(lambda: handoffs(d, "taken") == 10, what="10 taken")
        s = d.connect()
        s.sendall(preamble(PREFIX + "after"))
        wait_for(lambda: len(reg.got) == 11, what="a handoff after the reload")
        s.close()
        assert handoffs(d, "lost") + handoffs(d, "timeout") == 0
        reg.close()


def test_access_log_and_metrics_say_handoff():
    """The client's record is written when it is handed off: outcome and
    backend handoff, its route, the bytes passed; /metrics counts it."""
    d = metrics_daemon()
    d.access = os.path.join(d.dir, "access.log")
    with open(d.config) as f:
        text = f.read().replace("[global]\n", f"[global]\naccess_log = {d.access}\n", 1)
    with open(d.config, "w") as f:
        f.write(text)
    with d:
        reg = Registrant(d, serve=echo_preamble)
        pre = preamble(PREFIX + "logged")
        s = d.connect()
        s.sendall(pre)
        assert recv_until_close(s) == (pre, "eof")
        s.close()
        wait_for(lambda: os.path.exists(d.access) and os.path.getsize(d.access) > 0,
                 what="the access log record")
        with open(d.access) as f:
            rec = json.loads(f.readline())
        assert (rec["outcome"], rec["backend"], rec["route"], rec["bytes_up"],
                rec["bytes_down"], rec["via"]) == (
            "handoff", "handoff", "reg:" + PREFIX.rstrip("/"), len(pre), 0,
            PREFIX + "logged"), rec
        wait_for(lambda: handoffs(d, "taken") == 1, what="taken counted")
        reg.close()


def test_binary_upgrade_keeps_registration_and_pending_handoff():
    """SIGUSR2, then SIGTERM to the old process: the registrant's control
    connection, its registration and a handoff waiting for its TAKEN pass
    to the new process.  The registrant notices nothing: its TAKEN, sent
    after the old process is gone, is honoured (no fault for that
    client), the next client comes on the same connection under the same
    registration with a new id, and LIST shows the registration."""
    d = handoff_daemon(extra="handoff_timeout = 30s")
    d.start()
    pid = None
    try:
        ctl = Control(d.control).hello()
        reg = ctl.register()
        first = d.connect(timeout=10)
        first.sendall(preamble(PREFIX + "before"))
        line, data, fd = ctl.recv()
        hid, r, data, fd = parse_handoff(line, data, fd)
        assert r == reg and data == preamble(PREFIX + "before")
        d.proc.send_signal(signal.SIGUSR2)
        pid = new_pid(d)
        d.wait_log(f"nettcpd[{pid}]: notice: binary upgrade: took over 1 "
                   "control connection, 1 registration and 1 handoff waiting")
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(10 * SLOW) == 0
        ctl.send(f"TAKEN {hid}")
        client = socket.socket(fileno=fd)
        client.sendall(b"served")
        client.close()
        assert recv_until_close(first) == (b"served", "eof")
        first.close()
        second = d.connect(timeout=10)
        second.sendall(preamble(PREFIX + "after"))
        line, data, fd = ctl.recv()
        hid2, r, data, fd = parse_handoff(line, data, fd)
        assert r == reg and hid2 > hid and data == preamble(PREFIX + "after")
        ctl.send(f"TAKEN {hid2}")
        os.close(fd)
        second.close()
        routes = [x for x in ctl.request("LIST") if x.startswith("ROUTE ")]
        assert any(x.split(" ")[2:6] == ["handoff", "reg:" + PREFIX.rstrip("/"), PREFIX.rstrip("/"),
                                         "handoff"] for x in routes), routes
        assert "EndpointUnavailable" not in d.log(), d.log()
        ctl.close()
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        stop_upgraded(pid)


if __name__ == "__main__":
    run_tests(globals())
