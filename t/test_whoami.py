"""The example C service (examples/c, nettcp-whoami --listen) over raw sockets:
a real request of the .NET WCF client answered, session after session on one
connection; every preamble it cannot serve refused with the framing Fault; every
broken or hostile message or record closes that connection only (a log line, no
crash, no descriptor left behind), and the service goes on answering others;
--max-connections holds the next client, in the listen backlog or, behind
nettcpd's handoff, in nettcpd until it answers EndpointUnavailable.
t/interop_handoff.sh has the real .NET client call it."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, Daemon, connect, fault_record, free_port,  # noqa: E402
                          mbint, preamble, recv_exact, recv_until_close,
                          run_tests, sized_envelope, string_record, wait_for)

WHOAMI = os.environ.get("NETTCPD_WHOAMI") or os.path.join(
    os.path.dirname(NETTCPD), "..", "examples", "c", "nettcp-whoami")

# The .NET client's first request of a session (System.ServiceModel.NetTcp 10.1.0,
# Hello("hello#1")), as it sent it: the payload of its Sized Envelope.  The same
# bytes are check_nbfx's hello1.
HELLO1 = bytes.fromhex(
    "5f2175726e3a6e6574746370642d696e7465726f702f4957686f416d492f48656c6c6f1d"
    "6e65742e7463703a2f2f3132372e302e302e313a31383736372f57686f0548656c6c6f13"
    "75726e3a6e6574746370642d696e7465726f70047465787456020b0173040b0161065608"
    "440a1e0082ab01441aad403e89d64ed26440abc29b4ad210a832442c442aab1401440c1e"
    "0082ab0301560e42050a074209990768656c6c6f2331010101")
MESSAGE_ID = HELLO1[HELLO1.index(b"\x44\x1a\xad") + 3:][:16]
VIA = "net.tcp://127.0.0.1/Who"


class Service:
    """nettcp-whoami --listen on a free port, or with control=SOCKET registered
    for handoff of via."""

    def __init__(self, *options, control=None, via=None):
        self.port = free_port()
        where = (["--control", control, "--via", via] if control
                 else ["--listen", f"127.0.0.1:{self.port}"])
        self.proc = subprocess.Popen(
            [WHOAMI, "--verbose", "--name", "W", *options, *where],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("LISTENING"), f"service did not start: {line!r}"
        self.log_lines = []
        self.reader = threading.Thread(target=self._read_log, daemon=True)
        self.reader.start()

    def _read_log(self):
        for line in self.proc.stderr:
            self.log_lines.append(line.rstrip("\n"))

    def logged(self, text):
        return any(text in line for line in self.log_lines)

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def session(s, via=VIA):
    s.sendall(preamble(via))
    assert recv_exact(s, 1) == b"\x0b", "no Preamble Ack"


def read_envelope(s):
    head = recv_exact(s, 1)
    assert head == b"\x06", f"not a Sized Envelope: {head!r}"
    size = shift = 0
    while True:
        b = recv_exact(s, 1)[0]
        size |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return recv_exact(s, size)


def call_hello1(s):
    s.sendall(sized_envelope(HELLO1))
    reply = read_envelope(s)
    action = b"urn:nettcpd-interop/IWhoAmI/HelloResponse"
    assert bytes([0x99, len(action)]) + action in reply, reply
    assert b"\xad" + MESSAGE_ID in reply, "RelatesTo is not the request's MessageID"
    assert bytes([0x99, 10]) + b"W: hello#1" in reply, reply
    return reply


def closed(s):
    data, how = recv_until_close(s)
    return data


def test_sessions_on_one_connection():
    svc = Service()
    try:
        with connect(svc.port) as s:
            for k in range(3):   # three sessions, each with a fresh session dictionary
                session(s, f"{VIA}/{k}")
                call_hello1(s)
                call_hello1(s)   # the same request again: its strings are defined twice
                s.sendall(b"\x07")
                assert recv_exact(s, 1) == b"\x07", "End not answered with End"
            wait_for(lambda: svc.logged(f"session 3: session for: {VIA}/2"), what="third session logged")
    finally:
        svc.stop()


def test_preambles_refused_with_faults():
    svc = Service()
    try:
        cases = [
            (preamble(VIA, encoding=7), "ContentTypeInvalid"),   # binary, not session
            (bytes([0, 1, 0, 1, 2]) + string_record(2, VIA) + string_record(4, "text/xml") + b"\x0c",
             "ContentTypeInvalid"),
            (preamble(VIA, upgrade="application/ssl-tls"), "UpgradeInvalid"),
            (preamble(VIA, mode=1), "UnsupportedMode"),
            (preamble(VIA, version=(2, 0)), "UnsupportedVersion"),
        ]
        for data, fault in cases:
            with connect(svc.port) as s:
                s.sendall(data)
                assert closed(s) == fault_record(fault), f"want {fault}"
        assert svc.alive()
    finally:
        svc.stop()


def test_hostile_messages_close_the_connection():
    svc = Service()
    try:
        base = svc.fds()
        unknown_action = HELLO1.replace(b"IWhoAmI/Hello", b"IWhoAmI/Hellx")
        no_message_id = HELLO1.replace(b"\x44\x1a\xad" + MESSAGE_ID, b"\x44\x1a\xa9")  # empty MessageID
        cases = [
            ("garbage", sized_envelope(b"\x00\xff\xff\xff"), "bad message"),
            ("undefined session string", sized_envelope(b"\x00\x42\x07\x01"), "bad message"),
            ("truncated message", sized_envelope(HELLO1[:-2]), "bad message"),
            ("deep nesting", sized_envelope(b"\x00\x56\x02" + b"\x40\x01x" * 100), "bad message"),
            ("unknown action", sized_envelope(unknown_action), "no operation for this Action"),
            ("empty MessageID", sized_envelope(no_message_id), "without a MessageID"),
            ("record 09 in a session", b"\x09\x01x", "unexpected record"),
            ("envelope over 16 MiB", b"\x06" + mbint(16 * 1024 * 1024 + 1), "bad or truncated"),
            ("bad size field", b"\x06\xff\xff\xff\xff\xff", "bad or truncated"),
            ("client gone mid-envelope", None, "bad or truncated"),
        ]
        for what, data, logged in cases:
            before = len(svc.log_lines)
            with connect(svc.port) as s:
                session(s)
                if data is None:
                    s.sendall(b"\x06" + mbint(len(HELLO1)) + HELLO1[:50])
                    s.shutdown(socket.SHUT_WR)
                else:
                    s.sendall(data)
                assert closed(s) == b"", f"{what}: the service answered"
            wait_for(lambda: any(logged in line for line in svc.log_lines[before:]),
                     what=f"{what}: log line '{logged}'")
        # still serving, and every connection's descriptor closed
        with connect(svc.port) as s:
            session(s)
            call_hello1(s)
        wait_for(lambda: svc.fds() == base, what="descriptors back to the start")
        assert svc.alive()
    finally:
        svc.stop()


def test_concurrent_connections():
    svc = Service()
    errors = []

    def client():
        try:
            with connect(svc.port, timeout=20) as s:
                session(s)
                for _ in range(5):
                    call_hello1(s)
                s.sendall(b"\x07")
                assert recv_exact(s, 1) == b"\x07"
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    try:
        threads = [threading.Thread(target=client) for _ in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60 * SLOW)
        assert not errors, errors[:3]
    finally:
        svc.stop()


def test_max_connections_holds_the_next_client():
    """--max-connections 2: a third client is not taken (no Ack) while two are
    served, and is served as soon as one of them leaves."""
    svc = Service("--max-connections", "2")
    try:
        first, second = connect(svc.port), connect(svc.port)
        session(first)
        session(second)
        third = connect(svc.port)
        third.sendall(preamble(VIA))
        third.settimeout(1.0)
        try:
            got = third.recv(1)
        except socket.timeout:
            got = None
        assert got is None, f"a third connection was served: {got!r}"
        first.close()
        third.settimeout(10 * SLOW)
        assert recv_exact(third, 1) == b"\x0b", "the held client was not served"
        call_hello1(third)
        second.close()
        third.close()
    finally:
        svc.stop()


def test_max_connections_behind_handoff():
    """The same behind nettcpd's handoff: the registrant full, nettcpd holds the
    next client until handoff_timeout, then answers it EndpointUnavailable; once
    a connection ends, the next client is handed off and served."""
    sockdir = tempfile.mkdtemp(prefix="nettcpd-whoami-")
    control = os.path.join(sockdir, "control.sock")
    d = Daemon(extra_global=f"control = {control}\nhandoff_timeout = 1s").start()
    svc = None
    try:
        svc = Service("--max-connections", "1", control=control, via="net.tcp://+/Full")
        base = svc.fds()
        via = f"net.tcp://127.0.0.1:{d.port}/Full"
        first = connect(d.port)
        session(first, via)
        call_hello1(first)
        held = connect(d.port, timeout=10)
        held.sendall(preamble(via))
        assert closed(held) == fault_record("EndpointUnavailable")
        first.close()
        wait_for(lambda: svc.fds() == base, what="the first connection to end")
        later = connect(d.port, timeout=10)
        session(later, via)
        call_hello1(later)
        later.close()
    finally:
        if svc:
            svc.stop()
        d.stop()
        shutil.rmtree(sockdir, ignore_errors=True)


if __name__ == "__main__":
    run_tests(globals())
