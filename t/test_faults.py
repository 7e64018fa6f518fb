"""Every client nettcpd cannot serve gets a defined outcome: a framing Fault
record then FIN, or a reset; each is logged once with the reason."""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, Backend, Daemon, fault_record, free_port,  # noqa: E402
                          preamble, recv_exact, recv_until_close, run_tests, string_record, wait_for)

ENDPOINT_NOT_FOUND = bytes.fromhex(
    "0847687474703a2f2f736368656d61732e6d6963726f736f66742e636f6d2f77732f"
    "323030362f30352f6672616d696e672f6661756c74732f456e64706f696e744e6f74466f756e64")


def expect_fault(d, data, name):
    s = d.connect()
    s.sendall(data)
    got, how = recv_until_close(s)
    s.close()
    assert got == fault_record(name), got
    assert how == "eof", how


def expect_reset(d, data, within=3.0):
    """The daemon resets the connection without sending a byte."""
    s = d.connect()
    s.sendall(data)
    started = time.time()
    got, how = recv_until_close(s)
    s.close()
    assert got == b"", got
    assert how == "reset", how
    assert time.time() - started < within * SLOW


def test_unknown_via_gets_endpoint_not_found():
    a = Backend(name="A")
    with Daemon([("a", "net.tcp://+/Known", a.addr)]) as d:
        s = d.connect()
        s.sendall(preamble("net.tcp://public.example.com/Unknown"))
        got, how = recv_until_close(s)
        assert got == ENDPOINT_NOT_FOUND      # Ex 6 of the protocol notes, byte for byte
        assert how == "eof"
        # after the FIN the daemon still drains what the client sends
        s.sendall(b"\x07" * 1000)
        s.close()
        d.wait_log("via 'net.tcp://public.example.com/Unknown': no route, sent EndpointNotFound")
        assert "client 127.0.0.1:" in d.log()
        assert a.accepted == 0
    a.close()


def test_fault_sent_as_soon_as_the_via_is_complete():
    """With an upgrade the client stops after the Upgrade Request; without a
    route it must still get its fault, without sending Preamble End."""
    with Daemon([]) as d:
        expect_fault(d, preamble("net.tcp://h/x", upgrade="application/ssl-tls"),
                     "EndpointNotFound")
        # and with nothing after the Via at all
        expect_fault(d, preamble("net.tcp://h/x", encoding=None, end=False),
                     "EndpointNotFound")


def test_backend_refused_gets_endpoint_unavailable():
    dead = free_port()
    with Daemon([("dead", "net.tcp://+/Dead", f"127.0.0.1:{dead}")]) as d:
        expect_fault(d, preamble("net.tcp://h/Dead"), "EndpointUnavailable")
        d.wait_log("route [dead]: backend 127.0.0.1:%d: connect: Connection refused, "
                   "sent EndpointUnavailable" % dead)


def test_backend_connect_timeout_gets_endpoint_unavailable():
    # A listener that never accepts, with its backlog filled, drops SYNs:
    # a blackholed backend without leaving loopback.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    port = blackhole.getsockname()[1]
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
        fillers.append(f)
    time.sleep(0.2)
    with Daemon([("hole", "net.tcp://+/Hole", f"127.0.0.1:{port}")],
                extra_global="connect_timeout = 500ms") as d:
        started = time.time()
        expect_fault(d, preamble("net.tcp://h/Hole"), "EndpointUnavailable")
        elapsed = time.time() - started
        assert 0.4 < elapsed < 2.5 * SLOW, elapsed
        d.wait_log("connect_timeout expired, sent EndpointUnavailable")
    for f in fillers:
        f.close()
    blackhole.close()


def test_version_and_mode_faults():
    a = Backend(name="A")
    with Daemon([("a", "net.tcp://+/", a.addr)]) as d:
        expect_fault(d, preamble("net.tcp://h/x", version=(2, 0)), "UnsupportedVersion")
        expect_fault(d, bytes([0, 0, 0]), "UnsupportedVersion")
        for mode in (0, 3, 4, 5, 0x7F):
            expect_fault(d, preamble("net.tcp://h/x", mode=mode), "UnsupportedMode")
        d.wait_log("unsupported framing mode, sent UnsupportedMode")
        # any minor version is routed
        s = d.connect()
        s.sendall(preamble("net.tcp://h/x", version=(1, 7)))
        assert recv_exact(s, 2) == b"\x0bA"  # two writes: a record, then bytes passed on unread
        s.close()
    a.close()


def test_malformed_preambles_are_reset_without_fault():
    a = Backend(name="A")
    with Daemon([("a", "net.tcp://+/", a.addr)]) as d:
        expect_reset(d, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        expect_reset(d, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc")    # a TLS ClientHello
        expect_reset(d, bytes([0, 1, 0, 1, 2, 0x0c]))              # no Via
        too_long = "net.tcp://h/" + "x" * 2048
        expect_reset(d, preamble(too_long))                        # Via over 2048 bytes
        # a size field that claims 2 GiB is refused at once, not waited for
        expect_reset(d, bytes([0, 1, 0, 1, 2, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0x07]))
        expect_reset(d, bytes([0, 1, 0, 1, 2, 2, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]))
        for via in ("Service1", "/relative", "http://h/x", "net.tcp://user@h/x",
                    "net.tcp://h:99999/x", "", "net.tcp://+/x"):
            expect_reset(d, preamble(via))
        d.wait_log("malformed Via (")
        d.wait_log("malformed preamble (")
        assert a.accepted == 0
    a.close()


def test_eof_mid_preamble_closes_quietly():
    a = Backend(name="A")
    with Daemon([("a", "net.tcp://+/", a.addr)]) as d:
        s = d.connect()
        s.sendall(preamble("net.tcp://h/x")[:9])
        s.shutdown(socket.SHUT_WR)
        got, how = recv_until_close(s)
        s.close()
        assert got == b"" and how == "eof"
        d.wait_log("end of stream after 9 preamble bytes, closed")
        assert a.accepted == 0
    a.close()


def test_preamble_timeout_is_a_total_deadline():
    with Daemon([], extra_global="preamble_timeout = 1s") as d:
        s = d.connect()
        started = time.time()
        pre = preamble("net.tcp://h/" + "x" * 100)
        # trickle a byte every 100 ms: an idle timer would never fire
        got, how = b"", None
        s.settimeout(0.1)
        for byte in pre:
            try:
                s.send(bytes([byte]))
                chunk = s.recv(10)
                got, how = chunk, ("eof" if chunk == b"" else "data")
                break
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                how = "reset"
                break
        elapsed = time.time() - started
        s.close()
        assert how == "reset", (how, got)
        assert 0.9 < elapsed < 2.0 * SLOW, elapsed
        d.wait_log("preamble_timeout expired after")


def test_fault_drain_is_bounded():
    """A client that never reads nor closes after its fault is reset after
    the 2 s drain time; one that floods is reset after 64 KiB."""
    with Daemon([]) as d:
        base = d.sockets()
        s = d.connect()
        s.sendall(preamble("net.tcp://h/none"))
        started = time.time()
        time.sleep(0.2)
        got, how = recv_until_close(s)
        assert got == fault_record("EndpointNotFound") and how == "eof"
        # the daemon only half-closed; keep ours open and watch for the reset
        s.settimeout(5 * SLOW)
        try:
            while True:
                s.send(b"\x00")
                time.sleep(0.05)
        except (ConnectionResetError, BrokenPipeError):
            pass
        assert 1.5 < time.time() - started < 4 * SLOW
        s.close()

        s = d.connect()
        s.sendall(preamble("net.tcp://h/none"))
        flood = b"\x00" * (64 * 1024)
        reset_seen = False
        try:
            for _ in range(64):       # 4 MiB: far beyond the 64 KiB drain cap
                s.sendall(flood)
        except (ConnectionResetError, BrokenPipeError):
            reset_seen = True
        s.close()
        assert reset_seen
        d.assert_no_leak(base)


if __name__ == "__main__":
    run_tests(globals())
