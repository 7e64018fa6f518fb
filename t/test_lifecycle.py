"""The command line, configuration errors, and signals."""

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, SRCDIR, WRAPPER, Backend, Daemon, free_port,  # noqa: E402
                          preamble, recv_exact, recv_until_close, run_tests)


def nettcpd(*args):
    return subprocess.run(WRAPPER + [NETTCPD, *args], capture_output=True, text=True,
                          timeout=30 * SLOW)


def write_config(text):
    fd, path = tempfile.mkstemp(suffix=".ini", prefix="nettcpd-test-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def test_version_and_usage():
    r = nettcpd("-V")
    assert r.returncode == 0 and r.stdout.startswith("nettcpd "), r
    r = nettcpd("-h")
    assert r.returncode == 0 and "usage: nettcpd" in r.stdout
    r = nettcpd("-x")
    assert r.returncode == 2 and "usage:" in r.stderr
    r = nettcpd("stray-argument")
    assert r.returncode == 2


def version():
    """The version configure.ac gives the build."""
    with open(os.path.join(SRCDIR, "configure.ac")) as f:
        return re.search(r"AC_INIT\(\[nettcpd\], \[([^]]+)\]", f.read()).group(1)


def linked(lib):
    """Whether the binary links lib (ldd's view, not nettcpd's own word)."""
    r = subprocess.run(["ldd", NETTCPD], capture_output=True, text=True)
    return lib in r.stdout


def test_long_options_and_build_features():
    """--help lists every option and exits 0; --version prints the version;
    -V also names the build's optional features as the binary links them."""
    r = nettcpd("--help")
    assert r.returncode == 0 and r.stdout.startswith("usage: nettcpd"), r
    for opt in ("-c FILE", "-d", "-t", "-v", "--route VIA", "-V", "--version",
                "-h", "--help"):
        assert opt in r.stdout, (opt, r.stdout)
    r = nettcpd("--version")
    assert r.returncode == 0 and r.stdout.splitlines() == [f"nettcpd {version()}"], r
    r = nettcpd("-V")
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0] == f"nettcpd {version()}", lines
    want = ("+" if linked("libsystemd.so") else "-") + "libsystemd"
    assert any(want in line.split() for line in lines), (want, lines)
    assert "forward: splice copy" in lines, lines
    assert any(line.startswith("OpenSSL 3.") for line in lines), lines
    # nettcpd(8) documents every option the usage lists
    with open(os.path.join(SRCDIR, "man", "nettcpd.8")) as f:
        man = f.read()
    options = man[man.index(".SH OPTIONS"):man.index(".SH PROTOCOL BEHAVIOUR")]
    for opt in ("-c", "-d", "-t", "-v", "--route", "-V", "--version", "-h", "--help"):
        assert opt.replace("-", "\\-") in options, opt
    r = nettcpd("--bogus")
    assert r.returncode == 2 and "usage:" in r.stderr


def test_one_route_is_singular():
    """'1 route' in the start line, a reload's line and -t -v, not '1 routes'."""
    backend = free_port()
    d = Daemon([("a", "net.tcp://+/A", f"127.0.0.1:{backend}")])
    with d:
        assert ": 1 route, " in d.log(), d.log()
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("generation 2, 1 route")
    assert "1 routes" not in d.log(), d.log()
    r = nettcpd("-t", "-v", "-c", d.config)
    assert r.returncode == 0 and "1 route, 1 prefix " in r.stdout, r.stdout


def test_shipped_config_checks_ok():
    path = os.path.join(SRCDIR, "etc", "nettcpd.ini")
    r = nettcpd("-t", "-c", path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{path}: configuration OK"


def test_check_binds_nothing_and_probes_nothing():
    """-t succeeds while the listen port is taken and the backend is down."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    path = write_config(f"[global]\nlisten = 127.0.0.1:{port}\n\n"
                        f"[a]\nvia = net.tcp://+/A\nbackend = 127.0.0.1:{free_port()}\n")
    r = nettcpd("-t", "-c", path)
    assert r.returncode == 0, r.stderr
    # and running for real reports the bind failure
    r = nettcpd("-c", path)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in r.stderr
    busy.close()
    os.unlink(path)


def test_config_errors_name_file_and_line():
    path = write_config(
        "[global]\n"                                   # 1
        "listen = 127.0.0.1:8808\n"                    # 2
        "preamble_timeout = 10x\n"                     # 3
        "bogus = 1\n"                                  # 4
        "\n"                                           # 5
        "[nobackend]\n"                                # 6
        "via = net.tcp://+/A\n"                        # 7
        "\n"                                           # 8
        "[badvia]\n"                                   # 9
        "via = http://+/B\n"                           # 10
        "backend = 127.0.0.1:9001\n"                   # 11
    )
    r = nettcpd("-t", "-c", path)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert any(line.startswith(f"{path}:3:") and "preamble_timeout" in line for line in lines), lines
    assert any(line.startswith(f"{path}:4:") and "bogus" in line for line in lines), lines
    assert any(line.startswith(f"{path}:6:") and "backend" in line for line in lines), lines
    assert any(line.startswith(f"{path}:10:") for line in lines), lines
    # the daemon refuses to start on it too
    r = nettcpd("-c", path)
    assert r.returncode == 1 and f"{path}:3:" in r.stderr
    os.unlink(path)


def test_check_prints_the_route_table_and_explains_a_via():
    """-t -v: every prefix with its class, port, route and backend; -t
    --route VIA: which route the Via takes on each listening port and by
    which prefix, EndpointNotFound where none matches (exit 1), and a Via
    nettcpd would reset."""
    path = write_config("[global]\nlisten = 127.0.0.1:8808, 127.0.0.1:9808\n"
                        "[calc]\nvia = net.tcp://+/Calculator\nvia = net.tcp://*/\n"
                        "backend = 127.0.0.1:9001\n"
                        "[ported]\nvia = net.tcp://+:9808/Calculator/Admin\n"
                        "backend = 127.0.0.1:9002\n"
                        "[host]\nvia = net.tcp://example.com/Calculator\n"
                        "backend = 127.0.0.1:9003\n")
    r = nettcpd("-t", "-v", "-c", path)
    assert r.returncode == 0, r
    out = r.stdout
    assert "3 routes, 4 prefixes" in out, out
    for line in ("strong  net.tcp://+/calculator", "weak    net.tcp://*/",
                 "strong  net.tcp://+:9808/calculator/admin", "exact   net.tcp://example.com/calculator"):
        assert line in out, (line, out)
    assert "-> [ported] 127.0.0.1:9002" in out
    r = nettcpd("-t", "-c", path, "--route", "net.tcp://h/Calculator/Admin/x")
    assert r.returncode == 0, r
    assert "on port 8808: route [calc] -> 127.0.0.1:9001, by the strong prefix " \
           "net.tcp://+/calculator" in r.stdout, r.stdout
    assert "on port 9808: route [ported] -> 127.0.0.1:9002, by the strong prefix " \
           "net.tcp://+:9808/calculator/admin" in r.stdout, r.stdout
    r = nettcpd("-t", "-c", path, "--route", "net.tcp://example.com/Calculator")
    assert "route [calc]" in r.stdout   # strong beats exact, as in WCF
    r = nettcpd("-t", "-c", path, "--route", "net.tcp://other/Elsewhere")
    assert r.returncode == 0 and "by the weak prefix net.tcp://*/" in r.stdout, r.stdout
    os.unlink(path)
    path = write_config("[global]\nlisten = 127.0.0.1:8808\n"
                        "[calc]\nvia = net.tcp://+/Calculator\nbackend = 127.0.0.1:9001\n")
    r = nettcpd("-t", "-c", path, "--route", "net.tcp://h/Other")
    assert r.returncode == 1 and "on port 8808: no route, EndpointNotFound" in r.stdout, r
    r = nettcpd("-t", "-c", path, "--route", "net.tcp://h\x01/x")
    assert r.returncode == 1 and "the client's connection would be reset" in r.stdout, r
    r = nettcpd("-v", "-c", path)
    assert r.returncode == 2 and "usage" in r.stderr
    os.unlink(path)


def test_missing_config_file():
    r = nettcpd("-t", "-c", "/nonexistent/nettcpd.ini")
    assert r.returncode == 1
    assert r.stderr.startswith("/nonexistent/nettcpd.ini: cannot open"), r.stderr


def test_second_sigterm_or_sigint_exits_zero_promptly_with_open_connections():
    """The first signal drains (t/test_drain.py); a second one closes every
    connection at once, a session in progress too, and exits 0."""
    b = Backend(name="B")
    for sig in (signal.SIGTERM, signal.SIGINT):
        d = Daemon([("b", "net.tcp://+/", b.addr)]).start()
        routed = d.connect()
        routed.sendall(preamble("net.tcp://h/x"))
        assert recv_exact(routed, 2) == b"\x0bB"
        waiting = d.connect()
        waiting.sendall(b"\x00\x01")
        time.sleep(0.1)
        started = time.time()
        status = d.stop(sig, drain=0.2)
        assert status == 0, (sig, status, d.log())
        assert time.time() - started < 1.2 * SLOW
        # every connection was closed
        for s in (routed, waiting):
            got, how = recv_until_close(s)
            assert how in ("eof", "reset")
            s.close()
        assert "received again, shutting down at once" in d.log()
    b.close()


def test_sighup_with_an_unchanged_file_reloads_it():
    """(t/test_reload.py covers reloads that change something.)"""
    b = Backend(name="B")
    with Daemon([("b", "net.tcp://+/", b.addr)]) as d:
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log("SIGHUP received: reloaded")
        s = d.connect()
        s.sendall(preamble("net.tcp://h/x"))
        assert recv_exact(s, 2) == b"\x0bB"
        s.close()
    b.close()


def test_workers_share_one_listening_socket():
    """workers = 3: three event-loop threads beside the main one, all
    watching one listening socket on the port, and connections served."""
    b = Backend(name="B")
    with Daemon([("b", "net.tcp://+/", b.addr)], extra_global="workers = 3") as d:
        assert len(os.listdir(f"/proc/{d.pid}/task")) == 4
        listening = subprocess.run(["ss", "-Hltn", f"sport = :{d.port}"],
                                   capture_output=True, text=True).stdout
        assert len(listening.strip().splitlines()) == 1, listening
        for _ in range(50):
            s = d.connect()
            s.sendall(preamble("net.tcp://h/x"))
            assert recv_exact(s, 2) == b"\x0bB"
            s.close()
        d.wait_log("3 workers")
    b.close()


def test_a_second_instance_cannot_share_the_port():
    """Whatever either's workers: a second nettcpd on the same address
    fails to start with a clear error, and the first keeps the port."""
    b = Backend(name="B")
    for first, second in ((1, 1), (2, 2), (1, 4), (4, 1)):
        with Daemon([("b", "net.tcp://+/", b.addr)],
                    extra_global=f"workers = {first}") as d:
            path = write_config(f"[global]\nlisten = 127.0.0.1:{d.port}\n"
                                f"workers = {second}\n")
            r = nettcpd("-c", path)
            assert r.returncode == 1, (first, second, r)
            assert f"cannot listen on 127.0.0.1:{d.port}: Address already in use " \
                   "(another nettcpd, or another program, listens there)" in r.stderr, r
            os.unlink(path)
            for _ in range(10):
                s = d.connect()
                s.sendall(preamble("net.tcp://h/x"))
                assert recv_exact(s, 2) == b"\x0bB"
                s.close()
    b.close()


if __name__ == "__main__":
    run_tests(globals())
