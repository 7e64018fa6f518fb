"""nettcp-probe against the real daemon and against servers that misbehave:
each outcome is printed and has its own exit status (nettcp-probe(1)):
0 routed and acknowledged, 1 usage, 2 a fault (by name), 3 no connection,
4 timeout, 5 protocol error.  And the README's quick start: the shipped
configuration, the demo service behind its [calculator] route, the probe
with a routed and with an unknown Via, by hand and by make demo."""

import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, SRCDIR, Backend, Daemon, fault_record,  # noqa: E402
                          free_port, mbint, preamble, read_preamble, run_tests,
                          wait_for)
from test_sessions import service  # noqa: E402

BUILDDIR = os.path.join(os.path.dirname(NETTCPD), "..")
PROBE = os.path.join(BUILDDIR, "src", "nettcp-probe")
DEMO_SERVICE = os.path.join(BUILDDIR, "bench", "nmf-service")

ACKED, USAGE, FAULT, CONNECT, TIMEOUT, PROTOCOL = range(6)


def probe(*args, limit=30.0):
    """Run the probe; (exit status, stdout, seconds it took)."""
    started = time.time()
    r = subprocess.run([PROBE, *args], capture_output=True, text=True,
                       timeout=limit * SLOW)
    return r.returncode, r.stdout + r.stderr, time.time() - started


def server(handler):
    """A server on loopback that runs handler(conn) for each connection."""
    return Backend(handler=lambda c, b: handler(c))


def read_until_eof(c):
    while c.recv(4096):
        pass


def test_routed_session_acked_and_ended():
    a = service("A")
    with Daemon([("a", "net.tcp://+/Calculator", a.addr)]) as d:
        via = f"net.tcp://127.0.0.1:{d.port}/Calculator"
        rc, out, _ = probe(via)
        assert rc == ACKED, out
        assert f"connected to 127.0.0.1:{d.port} in " in out, out
        assert re.search(r"routed and acknowledged in \d+\.\d\d ms", out), out
        assert re.search(r"session ended: End answered in \d+\.\d\d ms, "
                         r"connection closed in \d+\.\d\d ms", out), out
        # the service got exactly the preamble a WCF client sends
        wait_for(lambda: len(a.sessions) == 1, what="the service's session")
        assert a.sessions[0][1] == preamble(via), a.sessions
        # HOST:PORT and --via: the same session
        rc, out, _ = probe("--via", "net.tcp://public.example/Calculator", f"127.0.0.1:{d.port}")
        assert rc == ACKED, out
        d.wait_log("via 'net.tcp://public.example/Calculator' route [a]")
    a.close()


def test_unknown_via_prints_endpoint_not_found():
    a = service("A")
    with Daemon([("a", "net.tcp://+/Calculator", a.addr)]) as d:
        rc, out, _ = probe(f"net.tcp://127.0.0.1:{d.port}/Nowhere")
        assert rc == FAULT, out
        assert re.search(r"^fault: EndpointNotFound in \d+\.\d\d ms$", out, re.M), out
        assert a.accepted == 0
    a.close()


def test_dead_backend_prints_endpoint_unavailable():
    with Daemon([("a", "net.tcp://+/Calculator", f"127.0.0.1:{free_port()}")]) as d:
        rc, out, _ = probe(f"net.tcp://127.0.0.1:{d.port}/Calculator")
        assert rc == FAULT, out
        assert "fault: EndpointUnavailable in " in out, out


def test_unsupported_mode_is_a_fault():
    with Daemon([]) as d:
        rc, out, _ = probe("--mode", "simplex", f"net.tcp://127.0.0.1:{d.port}/x")
        assert rc == FAULT, out
        assert "fault: UnsupportedMode in " in out, out


def test_nothing_listening_is_a_connect_failure():
    port = free_port()
    rc, out, _ = probe(f"127.0.0.1:{port}")
    assert rc == CONNECT, out
    assert f"cannot connect to 127.0.0.1:{port}: Connection refused" in out, out


def test_silent_server_times_out_within_the_bound():
    s = server(read_until_eof)
    rc, out, took = probe("-t", "1", f"127.0.0.1:{s.port}")
    assert rc == TIMEOUT, out
    assert "timeout: no answer to the preamble within 1 s" in out, out
    assert 1.0 <= took < 1.0 + 5.0 * SLOW, took
    s.close()


def test_silent_service_after_the_ack_times_out():
    def ack_then_silence(c):
        c.sendall(b"\x0b")
        read_until_eof(c)
    s = server(ack_then_silence)
    rc, out, took = probe("-t", "1", f"127.0.0.1:{s.port}")
    assert rc == TIMEOUT, out
    assert "routed and acknowledged" in out, out
    assert "timeout: no End from the service within 1 s" in out, out
    assert took < 1.0 + 5.0 * SLOW, took
    s.close()


def test_garbage_is_a_protocol_error():
    s = server(lambda c: c.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n"))
    rc, out, _ = probe(f"127.0.0.1:{s.port}")
    assert rc == PROTOCOL, out
    assert "protocol error: 0x48 where a Preamble Ack or a Fault was expected" in out, out
    s.close()


def test_close_and_reset_before_an_answer_are_protocol_errors():
    s = server(read_preamble)
    rc, out, _ = probe(f"127.0.0.1:{s.port}")
    assert rc == PROTOCOL, out
    assert "the server closed the connection instead of sending answer" in out, out
    s.close()

    def reset(c):
        c.recv(1 << 16)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        c.close()
    s = server(reset)
    rc, out, _ = probe(f"127.0.0.1:{s.port}")
    assert rc == PROTOCOL, out
    assert "protocol error: a reset instead of answer to the preamble" in out, out
    s.close()


def test_bytes_where_the_end_belongs_are_a_protocol_error():
    def ack_then_junk(c):
        c.sendall(b"\x0b")
        c.recv(1)
        c.sendall(b"\x06\x01x")
        read_until_eof(c)
    s = server(ack_then_junk)
    rc, out, _ = probe(f"127.0.0.1:{s.port}")
    assert rc == PROTOCOL, out
    assert "protocol error: 0x06 from the service where its End was expected" in out, out
    s.close()


def test_hostile_faults():
    """A server's fault text reaches the terminal escaped; a fault of an
    absurd size is not awaited."""
    uri = b"urn:x/\x1b[31mred\x07"
    s = server(lambda c: c.sendall(b"\x08" + mbint(len(uri)) + uri))
    rc, out, _ = probe(f"127.0.0.1:{s.port}")
    assert rc == FAULT, out
    assert "fault: urn:x/\\x1b[31mred\\x07 in " in out, out
    assert "\x1b" not in out
    s.close()

    s = server(lambda c: c.sendall(b"\x08" + mbint(2**31 - 1) + b"x"))
    rc, out, took = probe("-t", "5", f"127.0.0.1:{s.port}")
    assert rc == PROTOCOL, out
    assert "a Fault record of 2147483647 bytes" in out, out
    assert took < 3.0 * SLOW, took
    s.close()

    s = server(lambda c: c.sendall(b"\x08\xff\xff\xff\xff\xff"))
    rc, out, _ = probe(f"127.0.0.1:{s.port}")
    assert rc == PROTOCOL, out
    assert "a Fault record with an invalid size" in out, out
    s.close()

    # a framing fault of any name, one nettcpd never sends among them
    s = server(lambda c: c.sendall(fault_record("ServiceActivationFailed")))
    rc, out, _ = probe(f"127.0.0.1:{s.port}")
    assert rc == FAULT, out
    assert "fault: ServiceActivationFailed in " in out, out
    s.close()


def test_usage_errors():
    for args in ([], ["a:1", "b:2"], ["-t", "0", "127.0.0.1:1"], ["-t", "x", "127.0.0.1:1"],
                 ["-m", "triplex", "127.0.0.1:1"], ["no-port"], ["net.tcp:///path"],
                 ["--via", "", "127.0.0.1:1"], ["--via", "v" * 2049, "127.0.0.1:1"]):
        rc, out, _ = probe(*args)
        assert rc == USAGE, (args, rc, out)
        assert "nettcp-probe" in out, (args, out)


def test_readme_quick_start():
    """The README's quick start, on free ports instead of 8808 and 9001:
    nettcpd on the shipped etc/nettcpd.ini, the demo service on the port
    its [calculator] route names, the probe with a routed Via and with an
    unknown one."""
    with open(os.path.join(SRCDIR, "etc", "nettcpd.ini")) as f:
        shipped = f.read()
    assert "listen = 127.0.0.1:8808" in shipped
    assert "via = net.tcp://+/Calculator\nvia = net.tcp://+/Calc2\nbackend = 127.0.0.1:9001" in shipped
    public, private = free_port(), free_port()
    config = shipped.replace("127.0.0.1:8808", f"127.0.0.1:{public}").replace(
        "127.0.0.1:9001", f"127.0.0.1:{private}")
    demo = subprocess.Popen([DEMO_SERVICE, "-l", f"127.0.0.1:{private}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert demo.stdout.readline() == "ready\n"
        with Daemon(raw_config=config, listen=f"127.0.0.1:{public}") as d:
            d.port = public
            rc, out, _ = probe(f"net.tcp://127.0.0.1:{public}/Calculator")
            assert rc == ACKED, out
            assert "routed and acknowledged" in out and "session ended" in out, out
            rc, out, _ = probe(f"net.tcp://127.0.0.1:{public}/Nowhere")
            assert rc == FAULT, out
            assert "fault: EndpointNotFound" in out, out
    finally:
        demo.terminate()
        demo.wait(10)


def test_make_demo():
    """scripts/demo (make demo), the quick start in one command, on free
    ports: both probes as expected, exit 0, and nothing left running."""
    public, private = free_port(), free_port()
    env = dict(os.environ, DEMO_LISTEN=f"127.0.0.1:{public}",
               DEMO_BACKEND=f"127.0.0.1:{private}")
    r = subprocess.run(["bash", os.path.join(SRCDIR, "scripts", "demo"), BUILDDIR, SRCDIR],
                       env=env, capture_output=True, text=True, timeout=60 * SLOW)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert re.search(r"routed and acknowledged in .*\n.*\n\(exit 0\)", out), out
    assert "fault: EndpointNotFound in " in out and "(exit 2)" in out, out
    assert "no route, sent EndpointNotFound" in out, out
    for port in (public, private):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"


if __name__ == "__main__":
    run_tests(globals())
