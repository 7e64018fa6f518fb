"""send_proxy against a real receiving peer: HAProxy in tcp mode with
accept-proxy on its bind line, in front of a Python service.  HAProxy, not
our parser, reads nettcpd's v1 and v2 headers: its log (%ci:%cp, %fi:%fp)
names the client's address and port and the address the client reached,
and the service behind it receives the preamble and the session byte for
byte.  The client connects from 127.0.0.2, so an address HAProxy could only
have learnt from the header.  Skipped with a notice (exit 77) when haproxy
is not installed (scripts/install-test-deps installs it)."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, Daemon, free_port, run_tests,  # noqa: E402
                          wait_for)
from test_proxy_send import (client_from, config, envelope_bytes,  # noqa: E402
                             service, session)


class HAProxy:
    def __init__(self, backend_addr):
        self.dir = tempfile.mkdtemp(prefix="nettcpd-haproxy-")
        self.port = free_port()
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        self.logpath = os.path.join(self.dir, "haproxy.log")
        with open(self.cfg, "w") as f:
            f.write(f"""global
    log stdout format raw local0 info
defaults
    mode tcp
    log global
    option logasap
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:{self.port} accept-proxy
    log-format "PEER client=%ci:%cp front=%fi:%fp"
    default_backend be
backend be
    server s1 {backend_addr}
""")

    def __enter__(self):
        log = open(self.logpath, "wb")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg],
                                     stdout=log, stderr=log)
        log.close()
        deadline = time.time() + 10 * SLOW
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("haproxy did not listen:\n" + self.log())

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(5 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def through_haproxy(version):
    svc = service()
    with HAProxy(svc.addr) as hap:
        # The probe connection above has no header: HAProxy logs and drops it.
        d = Daemon(raw_config="")
        with open(d.config, "w") as f:
            f.write(config(f"127.0.0.1:{d.port}", f"127.0.0.1:{hap.port}",
                           f"send_proxy = {version}"))
        with d:
            s = client_from("127.0.0.2", d.port)
            cport = s.getsockname()[1]
            session(s, "net.tcp://front/calc", b"via haproxy")
            s.close()
            line = f"PEER client=127.0.0.2:{cport} front=127.0.0.1:{d.port}"
            wait_for(lambda: line in hap.log(), what=f"haproxy's {line!r}")
            want = envelope_bytes("net.tcp://front/calc", b"via haproxy")
            wait_for(lambda: [bytes(x) for x in svc.conns] == [want],
                     what="the preamble and session exact behind haproxy")
    svc.close()


def test_haproxy_reads_v1():
    through_haproxy("v1")


def test_haproxy_reads_v2():
    through_haproxy("v2")


if __name__ == "__main__":
    if shutil.which("haproxy") is None:
        print("SKIP: test_proxy_send_haproxy: haproxy not installed "
              "(apt-get install haproxy)")
        sys.exit(77)
    run_tests(globals())
