"""TLS termination (tls = terminate): the upgrade, the handshake, Preamble End
and Ack inside TLS, bulk data, close_notify, and every way it can fail.
The client side is Python's ssl module (OpenSSL), a peer nettcpd's code did
not write."""

import hashlib
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, WRAPPER, Backend, Daemon, fault_record,  # noqa: E402
                          free_port, preamble, read_preamble, recv_exact,
                          recv_until_close, run_tests)

PKI = tempfile.mkdtemp(prefix="nettcpd-tls-")


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, cwd=PKI)
    assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}"


def make_pki():
    """A test CA, a server certificate it signed, an expired one, and a key
    that belongs to neither."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
            "-subj", "/CN=nettcpd test CA", "-keyout", "ca.key", "-out", "ca.pem")
    ext = os.path.join(PKI, "san.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    # `openssl ca` is the 3.0 CLI's only way to set dates in the past
    with open(os.path.join(PKI, "ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\n"
                "unique_subject = no\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\n"
                "policy = any\n[any]\ncommonName = supplied\n")
    open(os.path.join(PKI, "index.txt"), "w").close()
    with open(os.path.join(PKI, "serial"), "w") as f:
        f.write("01\n")
    for name, dates in (("server", ("20240101000000Z", "20991231000000Z")),
                        ("expired", ("20190101000000Z", "20200101000000Z"))):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                "-keyout", f"{name}.key", "-out", f"{name}.csr")
        openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key",
                "-in", f"{name}.csr", "-out", f"{name}.crt", "-extfile", ext, "-notext",
                "-startdate", dates[0], "-enddate", dates[1])
        with open(os.path.join(PKI, f"{name}.pem"), "w") as out:
            for part in (f"{name}.crt", "ca.pem"):    # the chain: leaf, then CA
                with open(os.path.join(PKI, part)) as f:
                    out.write(f.read())
    openssl("genpkey", "-algorithm", "RSA", "-out", "other.key")


def pki(name):
    return os.path.join(PKI, name)


def tls_route(name, via, backend, cert="server.pem", key="server.key", extra=()):
    lines = [f"[{name}]", f"via = {via}", f"backend = {backend}", "tls = terminate",
             f"tls_cert = {pki(cert)}", f"tls_key = {pki(key)}", *extra]
    return "\n".join(lines) + "\n"


def daemon_with(routes_text, extra_global=""):
    port = free_port()
    cfg = (f"[global]\nlisten = 127.0.0.1:{port}\nlog_level = debug\n"
           f"preamble_timeout = 2s\n{extra_global}\n\n{routes_text}")
    d = Daemon(raw_config=cfg)
    d.port = port
    return d


def client_context():
    ctx = ssl.create_default_context(cafile=pki("ca.pem"))
    ctx.check_hostname = True
    return ctx


def upgrade(d, via, server_hostname="localhost"):
    """Clear preamble, Upgrade Request, 0A, handshake, 0C inside TLS."""
    s = d.connect()
    s.sendall(preamble(via, upgrade="application/ssl-tls"))
    assert recv_exact(s, 1) == b"\x0a"
    t = client_context().wrap_socket(s, server_hostname=server_hostname)
    t.sendall(b"\x0c")
    return t


class TLSClient:
    """A TLS client over a memory BIO, so close_notify can be sent while
    the stream is still read (ssl.SSLSocket.unwrap() cannot do that)."""

    def __init__(self, sock, hostname="localhost", context=None, session=None):
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = (context or client_context()).wrap_bio(
            self.incoming, self.outgoing, server_hostname=hostname, session=session)
        self._run(self.obj.do_handshake)

    def _flush(self):
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def _run(self, fn, *args):
        while True:
            try:
                result = fn(*args)
                self._flush()
                return result
            except ssl.SSLWantReadError:
                self._flush()
                self._receive()

    def _receive(self):
        """Feed OpenSSL what the socket has; the end of stream at its end."""
        data = self.sock.recv(65536)
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()

    def send(self, data):
        view = memoryview(data)
        while view:
            view = view[self._run(self.obj.write, view):]

    def recv(self, n=65536):
        """Bytes, or b"" once the server's close_notify has arrived."""
        try:
            return self._run(self.obj.read, n)
        except ssl.SSLZeroReturnError:
            return b""

    def close_notify(self):
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass    # sent; the server's comes later, after its data
        self._flush()


def test_terminated_preamble_and_bulk_both_ways():
    """Upgrade, handshake, 0C/0B inside TLS, the backend's clear preamble,
    then 6 MiB up, close_notify, and 8 MiB plus a digest down, ending in the
    server's close_notify.  The bytes after the Ack are not framing, so this
    runs in the blind mode (follow_sessions = off); test_tls_sessions.py
    follows sessions inside TLS."""
    received = {}
    down_bytes = os.urandom(8 << 20)

    def backend(c, be):
        received["preamble"] = read_preamble(c)
        c.sendall(b"\x0bplain-backend")
        digest, n = hashlib.sha256(), 0
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            digest.update(chunk)
            n += len(chunk)
        received["up_bytes"] = n
        c.sendall(down_bytes + digest.digest())
        c.shutdown(socket.SHUT_WR)

    b = Backend(backend)
    with daemon_with(tls_route("secure", "net.tcp://+/Secure", b.addr),
                     "follow_sessions = off") as d:
        base = d.sockets()
        s = d.connect(timeout=30)
        s.sendall(preamble("net.tcp://localhost/Secure/Calc", upgrade="application/ssl-tls"))
        assert recv_exact(s, 1) == b"\x0a"
        t = TLSClient(s)
        t.send(b"\x0c")
        ack = b""
        while len(ack) < 14:
            ack += t.recv(14 - len(ack))
        assert ack == b"\x0bplain-backend"              # the ack, inside TLS
        # the backend got the clear preamble without the upgrade record
        assert received["preamble"] == preamble("net.tcp://localhost/Secure/Calc")
        up = os.urandom(6 << 20)
        t.send(up)
        t.close_notify()                                 # ends the upload only
        down = bytearray()
        while True:
            chunk = t.recv()
            if not chunk:
                break
            down += chunk
        assert received["up_bytes"] == len(up)
        assert bytes(down) == down_bytes + hashlib.sha256(up).digest()
        s.close()
        d.assert_no_leak(base)
        d.wait_log("TLS handshake done (TLSv1.3")
        assert "TLS: 1 terminating route; " in d.log()
    b.close()


def test_long_via_then_preamble_end_inside_tls():
    """A Via near the 2048-byte limit before the upgrade, Preamble End
    inside TLS: the preamble's buffer grows past its first size on the
    clear side and takes the bytes read inside TLS after them."""
    received = {}

    def backend(c, be):
        received["preamble"] = read_preamble(c)
        c.sendall(b"\x0b")

    via = "net.tcp://localhost/Secure/" + "x" * 1990
    b = Backend(backend)
    with daemon_with(tls_route("secure", "net.tcp://+/Secure", b.addr)) as d:
        t = upgrade(d, via)
        assert recv_exact(t, 1) == b"\x0b"
        assert received["preamble"] == preamble(via)
        t.close()
    b.close()


def test_fin_without_close_notify_is_a_normal_end():
    """A client that stops in the middle of a session with a FIN and no
    close_notify: the upload ends cleanly (the service sees the FIN), not
    as an error, and the service's answer still reaches the client."""
    got = {}

    def backend(c, be):
        read_preamble(c)
        c.sendall(b"\x0b")
        buf = recv_until_close(c)[0]
        got["data"] = bytes(buf)
        c.sendall(b"bye")
        c.shutdown(socket.SHUT_WR)

    b = Backend(backend)
    with daemon_with(tls_route("secure", "net.tcp://+/", b.addr)) as d:
        t = upgrade(d, "net.tcp://localhost/x")
        assert recv_exact(t, 1) == b"\x0b"
        t.sendall(b"\x06\x03abc")
        raw = socket.socket(fileno=os.dup(t.fileno()))
        raw.shutdown(socket.SHUT_WR)      # FIN, no close_notify
        assert recv_exact(t, 3) == b"bye"
        deadline = time.time() + 5
        while "data" not in got and time.time() < deadline:
            time.sleep(0.02)
        assert got["data"] == b"\x06\x03abc"
        raw.close()
        t.close()
    b.close()


def test_tls_min_version_is_enforced():
    b = Backend(name="B")
    route = tls_route("secure", "net.tcp://+/", b.addr,
                      extra=["tls_min_version = 1.3"])
    with daemon_with(route) as d:
        s = d.connect()
        s.sendall(preamble("net.tcp://h/x", upgrade="application/ssl-tls"))
        assert recv_exact(s, 1) == b"\x0a"
        ctx = client_context()
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.wrap_socket(s, server_hostname="localhost")
            raise AssertionError("TLS 1.2 accepted with tls_min_version = 1.3")
        except (ssl.SSLError, ConnectionResetError, OSError):
            pass
        s.close()
        d.wait_log("TLS handshake failed")
    b.close()


def test_client_without_upgrade_gets_upgrade_invalid():
    b = Backend(name="B")
    with daemon_with(tls_route("secure", "net.tcp://+/Secure", b.addr)) as d:
        s = d.connect()
        s.sendall(preamble("net.tcp://h/Secure"))
        got, how = recv_until_close(s)
        s.close()
        assert got == fault_record("UpgradeInvalid") and how == "eof"
        d.wait_log("did not ask for the TLS upgrade this route requires, sent UpgradeInvalid")
        # negotiate cannot be served by a terminating route
        s = d.connect()
        s.sendall(preamble("net.tcp://h/Secure", upgrade="application/negotiate"))
        got, how = recv_until_close(s)
        s.close()
        assert got == fault_record("UpgradeInvalid")
        d.wait_log("upgrade 'application/negotiate' cannot be served")
        assert b.accepted == 0
    b.close()


def test_handshake_garbage_and_timeout_close_cleanly():
    b = Backend(name="B")
    with daemon_with(tls_route("secure", "net.tcp://+/", b.addr)) as d:
        base = d.sockets()
        s = d.connect()
        s.sendall(preamble("net.tcp://h/x", upgrade="application/ssl-tls"))
        assert recv_exact(s, 1) == b"\x0a"
        s.sendall(b"this is not a ClientHello at all\r\n" * 4)
        got, how = recv_until_close(s)
        s.close()
        assert how in ("eof", "reset")
        d.wait_log("TLS handshake failed")
        # a silent client after the upgrade response: closed at preamble_timeout
        s = d.connect()
        started = time.time()
        s.sendall(preamble("net.tcp://h/x", upgrade="application/ssl-tls"))
        assert recv_exact(s, 1) == b"\x0a"
        got, how = recv_until_close(s)
        s.close()
        assert how == "eof"
        assert 1.5 < time.time() - started < 4 * SLOW
        d.wait_log("preamble_timeout expired in the TLS handshake, closed")
        d.assert_no_leak(base)
        assert b.accepted == 0
    b.close()


def test_backend_down_gets_fault_inside_tls():
    dead = free_port()
    with daemon_with(tls_route("secure", "net.tcp://+/", f"127.0.0.1:{dead}")) as d:
        t = upgrade(d, "net.tcp://localhost/x")
        buf = bytearray()
        try:
            while True:
                chunk = t.recv(4096)
                if not chunk:
                    break
                buf += chunk
        except (ssl.SSLEOFError, ConnectionResetError):
            pass
        assert bytes(buf) == fault_record("EndpointUnavailable"), buf
        t.close()


def test_passthrough_is_the_default():
    """Without tls = terminate the upgrade reaches the backend untouched."""
    def backend(c, be):
        data = c.recv(4096)
        be.received.append(data)
        c.sendall(b"\x0a")

    b = Backend(backend)
    with Daemon([("p", "net.tcp://+/", b.addr)]) as d:
        s = d.connect()
        pre = preamble("net.tcp://h/x", upgrade="application/ssl-tls")
        s.sendall(pre)
        assert recv_exact(s, 1) == b"\x0a"
        s.close()
        assert b.received == [pre]
    b.close()


def check_config(text):
    path = os.path.join(PKI, "check.ini")
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run(WRAPPER + [NETTCPD, "-t", "-c", path], capture_output=True,
                       text=True, timeout=30 * SLOW)
    return path, r


def test_config_check_of_certificates():
    head = "[global]\nlisten = 127.0.0.1:1\n\n"
    # a key that does not belong to the certificate: error at the tls_key line
    path, r = check_config(head + tls_route("a", "net.tcp://+/", "127.0.0.1:1", key="other.key"))
    assert r.returncode == 1
    assert f"{path}:9: tls_key '{pki('other.key')}' does not match" in r.stderr, r.stderr
    # an expired certificate is accepted with a warning naming its line
    path, r = check_config(head + tls_route("a", "net.tcp://+/", "127.0.0.1:1",
                                            cert="expired.pem", key="expired.key"))
    assert r.returncode == 0, r.stderr
    assert f"{path}:8: warning: tls_cert '{pki('expired.pem')}': certificate has expired" \
        in r.stderr, r.stderr
    # a missing file, a bad version, TLS keys on a passthrough route,
    # terminate without a key
    path, r = check_config(head + "[a]\nvia = net.tcp://+/\nbackend = 127.0.0.1:1\n"
                           "tls = terminate\ntls_cert = /nonexistent.pem\ntls_key = x\n"
                           "tls_min_version = 1.1\n\n"
                           "[b]\nvia = net.tcp://+/b\nbackend = 127.0.0.1:1\n"
                           "tls_cert = x\n\n"
                           "[c]\nvia = net.tcp://+/c\nbackend = 127.0.0.1:1\n"
                           "tls = terminate\ntls_cert = x\n\n"
                           "[d]\nvia = net.tcp://+/d\nbackend = 127.0.0.1:1\ntls = maybe\n")
    assert r.returncode == 1
    err = r.stderr
    assert f"{path}:10: unknown tls_min_version '1.1'" in err, err
    assert f"{path}:15: 'tls_cert' needs tls = terminate" in err, err
    assert f"{path}:17: route [c] has tls = terminate but no tls_key" in err, err
    assert f"{path}:26: unknown tls 'maybe'" in err, err
    # identical settings share one context; both routes work
    b = Backend(name="B")
    routes = (tls_route("one", "net.tcp://+/One", b.addr) +
              tls_route("two", "net.tcp://+/Two", b.addr))
    with daemon_with(routes) as d:
        for via in ("net.tcp://localhost/One", "net.tcp://localhost/Two"):
            t = upgrade(d, via)
            assert recv_exact(t, 2) == b"\x0bB"
            t.close()
    b.close()


if __name__ == "__main__":
    make_pki()
    run_tests(globals())
