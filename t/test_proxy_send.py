"""send_proxy and rewrite_via: what a backend receives, byte for byte.  The
PROXY header (v1, v2; TCP4, TCP6) on each new backend connection before the
replayed preamble, never on a pooled one, again on a redial; a pooled
connection that carries a client's header serves no other client address
and no route without send_proxy; the Via naming the backend for the first
and a later session on one connection, the rest of the replay exact; a
rewritten Via over the protocol's maximum is a fault; -t checks the keys
with FILE:LINE.  Real daemon, real sockets."""

import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (NETTCPD, SLOW, Backend, Daemon,  # noqa: E402
                          complete_preamble, connect, fault_record, free_port,
                          preamble, recv_exact,
                          recv_until_close, run_tests, sized_envelope,
                          wait_for)

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


class Raw:
    """Reads from a socket, keeping every byte read in raw."""

    def __init__(self, s, raw):
        self.s, self.raw, self.buf = s, raw, bytearray()

    def take(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(1 << 16)
            if not chunk:
                return None
            self.buf += chunk
            self.raw += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def mbint(self):
        v = shift = 0
        while True:
            b = self.take(1)[0]
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v


def read_proxy_header(r):
    """A PROXY header if the connection starts with one (v1 line or v2
    block), else b"" with the first byte put back."""
    first = r.take(1)
    if first == b"P":
        out = bytearray(first)
        while not out.endswith(b"\r\n"):
            out += r.take(1)
        return bytes(out)
    if first == b"\r":
        out = first + r.take(15)
        return out + r.take(struct.unpack("!H", out[14:16])[0])
    r.buf[:0] = first
    return b""


def wcf_service(drop_second=False):
    """A WCF-like service that records each connection's bytes in
    backend.conns: an optional PROXY header, then preambles; Ack each, echo
    each envelope, End for End, and the next preamble on the same
    connection.  drop_second: close at the second preamble, unanswered."""
    def handler(c, backend):
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw = bytearray()
        with backend.lock:
            backend.conns.append(raw)
        r = Raw(c, raw)
        read_proxy_header(r)
        here = 0
        while True:
            pre = bytearray()
            while not complete_preamble(bytes(pre)):
                b = r.take(1)
                if b is None:
                    return
                pre += b
            here += 1
            if drop_second and here > 1:
                return
            c.sendall(b"\x0b")
            while True:
                t = r.take(1)
                if t is None:
                    return
                if t[0] == 0x06:
                    c.sendall(sized_envelope(r.take(r.mbint())))
                elif t[0] == 0x07:
                    c.sendall(b"\x07")
                    break
                else:
                    return
    return handler


def service(host="127.0.0.1", **kw):
    b = Backend(wcf_service(**kw), host=host)
    b.conns = []
    return b


def session(s, via, payload=b"hello"):
    """One duplex session on s: preamble, Ack, an envelope echoed, End."""
    s.sendall(preamble(via))
    assert recv_exact(s, 1) == b"\x0b"
    s.sendall(sized_envelope(payload))
    assert recv_exact(s, 1 + 1 + len(payload)) == sized_envelope(payload)
    s.sendall(b"\x07")
    assert recv_exact(s, 1) == b"\x07"


def envelope_bytes(via, payload=b"hello"):
    return preamble(via) + sized_envelope(payload) + b"\x07"


def config(listen, backend, route_keys, extra_routes=""):
    # One worker: each keeps its own pool, and these tests ask which
    # connection a later client connection is given.
    return (f"[global]\nlisten = {listen}\nlog_level = debug\nworkers = 1\n\n"
            f"[calc]\nvia = net.tcp://+/calc\nbackend = {backend}\n"
            f"{route_keys}\n{extra_routes}")


def pooled(d, n):
    """Wait until n backend connections went to the pool, then past the
    pool's settle period (10 ms), so that the next session may take one."""
    wait_for(lambda: d.log().count("backend connection pooled") >= n,
             what=f"{n} pooled backend connections")
    time.sleep(0.05)


def header_v1(src, dst):
    fam = "TCP6" if ":" in src[0] else "TCP4"
    return f"PROXY {fam} {src[0]} {dst[0]} {src[1]} {dst[1]}\r\n".encode()


def header_v2(src, dst):
    fam = socket.AF_INET6 if ":" in src[0] else socket.AF_INET
    addrs = (socket.inet_pton(fam, src[0]) + socket.inet_pton(fam, dst[0]) +
             struct.pack("!HH", src[1], dst[1]))
    return (V2_SIG + bytes([0x21, 0x11 if fam == socket.AF_INET else 0x21]) +
            struct.pack("!H", len(addrs)) + addrs)


def two_sessions_one_header(version, host):
    b = service()
    port_host = f"[{host}]" if ":" in host else host
    d = Daemon(raw_config="")
    d.listen = f"{port_host}:{d.port}"
    with open(d.config, "w") as f:
        f.write(config(d.listen, b.addr, f"send_proxy = {version}"))
    with d:
        s = connect(d.port, host=host)
        src, dst = s.getsockname()[:2], s.getpeername()[:2]
        session(s, "net.tcp://front/calc/a", b"one")
        pooled(d, 1)
        session(s, "net.tcp://front/calc/b", b"two")
        s.close()
        want_header = (header_v1 if version == "v1" else header_v2)(src, dst)
        want = (want_header + envelope_bytes("net.tcp://front/calc/a", b"one") +
                envelope_bytes("net.tcp://front/calc/b", b"two"))
        wait_for(lambda: len(b.conns) == 1 and bytes(b.conns[0]) == want,
                 what="the header once, then both sessions exactly")
        assert b.accepted == 1, b.accepted
    b.close()


def test_v1_tcp4_header_then_pooled_session_without_one():
    two_sessions_one_header("v1", "127.0.0.1")


def test_v2_tcp4_header_then_pooled_session_without_one():
    two_sessions_one_header("v2", "127.0.0.1")


def test_v1_tcp6_header_then_pooled_session_without_one():
    two_sessions_one_header("v1", "::1")


def test_v2_tcp6_header_then_pooled_session_without_one():
    two_sessions_one_header("v2", "::1")


def client_from(ip, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5.0 * SLOW)
    s.bind((ip, 0))
    s.connect(("127.0.0.1", port))
    return s


def test_pooled_connection_serves_only_its_client_address():
    """A's pooled connection names A: B (another address) gets a new one
    with its own header, a route without send_proxy to the same backend
    gets one without a header, and A's next connection (another port,
    the same address) reuses A's."""
    b = service()
    other = (f"[plain]\nvia = net.tcp://+/plain\nbackend = {b.addr}\n")
    d = Daemon(raw_config="")
    with open(d.config, "w") as f:
        f.write(config(f"127.0.0.1:{d.port}", b.addr, "send_proxy = v1", other))
    with d:
        a = client_from("127.0.0.1", d.port)
        a_src = a.getsockname()
        session(a, "net.tcp://front/calc", b"a1")
        a.close()
        pooled(d, 1)
        bb = client_from("127.0.0.2", d.port)
        b_src = bb.getsockname()
        session(bb, "net.tcp://front/calc", b"b1")
        bb.close()
        pooled(d, 2)
        p = client_from("127.0.0.1", d.port)
        session(p, "net.tcp://front/plain", b"p1")
        p.close()
        pooled(d, 3)
        a2 = client_from("127.0.0.1", d.port)
        session(a2, "net.tcp://front/calc", b"a2")
        a2.close()
        dst = ("127.0.0.1", d.port)
        want = [
            header_v1(a_src, dst) + envelope_bytes("net.tcp://front/calc", b"a1") +
            envelope_bytes("net.tcp://front/calc", b"a2"),
            header_v1(b_src, dst) + envelope_bytes("net.tcp://front/calc", b"b1"),
            envelope_bytes("net.tcp://front/plain", b"p1"),
        ]
        wait_for(lambda: [bytes(x) for x in b.conns] == want,
                 what="one backend connection per client address and header")
    b.close()


def test_behind_listen_proxy_the_balancers_addresses_pass_on():
    """On a listen_proxy listener the header sent names the client and the
    destination of the balancer's header (what the client dialled), not
    the balancer's connection to nettcpd, as HAProxy passes them on."""
    b = service()
    d = Daemon(raw_config="")
    with open(d.config, "w") as f:
        f.write(config(f"127.0.0.1:{free_port()}", b.addr, "send_proxy = v1")
                .replace("listen = ", f"listen_proxy = 127.0.0.1:{d.port}\nlisten = "))
    with d:
        client, vip = ("192.0.2.7", 50312), ("198.51.100.1", 808)
        s = connect(d.port)
        s.sendall(header_v2(client, vip))
        session(s, "net.tcp://front/calc", b"one")
        s.close()
        want = header_v1(client, vip) + envelope_bytes("net.tcp://front/calc", b"one")
        wait_for(lambda: [bytes(x) for x in b.conns] == [want],
                 what="the balancer's client and destination, then the session")
    b.close()


def test_behind_listen_proxy_a_local_header_passes_the_sockets_addresses():
    """A LOCAL header (the balancer's own connection, as its health check)
    names no client: the header sent names the balancer's connection to
    nettcpd, as on a plain listener, and no log line names a balancer; nor
    does the line of a connection whose header never comes."""
    b = service()
    d = Daemon(raw_config="")
    with open(d.config, "w") as f:
        f.write(config(f"127.0.0.1:{free_port()}", b.addr, "send_proxy = v1")
                .replace("listen = ", f"listen_proxy = 127.0.0.1:{d.port}\n"
                         "proxy_timeout = 500ms\nlisten = "))
    with d:
        s = connect(d.port)
        src, dst = s.getsockname(), s.getpeername()
        s.sendall(V2_SIG + b"\x20\x00\x00\x00")
        session(s, "net.tcp://front/calc", b"one")
        s.close()
        want = header_v1(src, dst) + envelope_bytes("net.tcp://front/calc", b"one")
        wait_for(lambda: [bytes(x) for x in b.conns] == [want],
                 what="the balancer's own addresses, then the session")
        silent = connect(d.port)
        silent_port = silent.getsockname()[1]
        recv_until_close(silent)
        silent.close()
        wait_for(lambda: "proxy_timeout expired" in d.log(),
                 what="the silent connection's proxy_timeout")
        log = d.log()
        assert f"client 127.0.0.1:{src[1]}: PROXY v2 header (LOCAL" in log, log
        assert f"client 127.0.0.1:{silent_port}: proxy_timeout expired" in log, log
        assert "(proxy " not in log, log
    b.close()


def test_redial_sends_the_header_again():
    """A pooled connection the service closes under the next preamble is
    redialled: the new connection starts with the header again."""
    b = service(drop_second=True)
    d = Daemon(raw_config="")
    with open(d.config, "w") as f:
        f.write(config(f"127.0.0.1:{d.port}", b.addr, "send_proxy = v2"))
    with d:
        s = connect(d.port)
        src, dst = s.getsockname(), s.getpeername()
        session(s, "net.tcp://front/calc", b"one")
        pooled(d, 1)
        session(s, "net.tcp://front/calc", b"two")
        s.close()
        h = header_v2(src, dst)
        pre = preamble("net.tcp://front/calc")
        want = [h + envelope_bytes("net.tcp://front/calc", b"one") + pre,
                h + envelope_bytes("net.tcp://front/calc", b"two")]
        wait_for(lambda: [bytes(x) for x in b.conns] == want,
                 what="the redial's own header")
        assert "redialling" in d.log()
    b.close()


def test_reload_turns_send_proxy_on_and_off():
    """A reload applies send_proxy from the next session: a connection
    pooled without a header is not given to a session that must send one,
    and the other way round."""
    b = service()
    d = Daemon(raw_config="")

    def write(keys):
        with open(d.config, "w") as f:
            f.write(config(f"127.0.0.1:{d.port}", b.addr, keys))

    def served(n, generation=None):
        if generation is not None:
            d.proc.send_signal(signal.SIGHUP)
            d.wait_log(f"took generation {generation}")
        s = connect(d.port)
        src = s.getsockname()
        session(s, "net.tcp://front/calc", n)
        s.close()
        pooled(d, generation or 1)
        return src

    write("send_proxy = off")
    with d:
        served(b"off")
        write("send_proxy = v1")
        src = served(b"v1", 2)
        write("send_proxy = off")
        served(b"off again", 3)
        dst = ("127.0.0.1", d.port)
        want = [envelope_bytes("net.tcp://front/calc", b"off") +
                envelope_bytes("net.tcp://front/calc", b"off again"),
                header_v1(src, dst) + envelope_bytes("net.tcp://front/calc", b"v1")]
        wait_for(lambda: [bytes(x) for x in b.conns] == want,
                 what="a header only on the connection opened under send_proxy")
    b.close()


def test_rewrite_via_first_and_later_session():
    """The backend reads a Via naming itself, its size field recomputed,
    for the first session and the next on the same (pooled) connection;
    envelopes the client sent with its preamble follow exactly (on a new
    connection: such a session takes no pooled one)."""
    b = service()
    d = Daemon(raw_config="")
    with open(d.config, "w") as f:
        f.write(config(f"127.0.0.1:{d.port}", b.addr, "rewrite_via = on"))
    long_path = "/calc/" + "x" * 150          # the size field grows a byte
    with d:
        s = connect(d.port)
        session(s, "net.tcp://front.example.com:808/calc/Svc", b"one")
        pooled(d, 1)
        session(s, "net.tcp://f" + long_path, b"two")
        pooled(d, 2)
        # The third preamble with its envelope and End in one write.
        s.sendall(envelope_bytes("net.tcp://f" + long_path, b"thr"))
        assert recv_exact(s, 1) == b"\x0b"
        assert recv_exact(s, 5) == sized_envelope(b"thr")
        assert recv_exact(s, 1) == b"\x07"
        s.close()
        want = [envelope_bytes(f"net.tcp://{b.addr}/calc/Svc", b"one") +
                envelope_bytes(f"net.tcp://{b.addr}" + long_path, b"two"),
                envelope_bytes(f"net.tcp://{b.addr}" + long_path, b"thr")]
        wait_for(lambda: [bytes(c) for c in b.conns] == want,
                 what="every Via naming the backend")
    b.close()


def test_rewrite_via_where_the_router_reads_the_authority():
    """A Via whose slashes are backslashes, as System.Uri reads it, with a
    "://" in its path: the authority replaced is the one routed."""
    b = service()
    d = Daemon(raw_config="")
    with open(d.config, "w") as f:
        f.write(config(f"127.0.0.1:{d.port}", b.addr, "rewrite_via = on"))
    with d:
        s = connect(d.port)
        session(s, "net.tcp:\\\\front\\calc/x://y", b"one")
        s.close()
        want = envelope_bytes(f"net.tcp:\\\\{b.addr}\\calc/x://y", b"one")
        wait_for(lambda: len(b.conns) == 1 and bytes(b.conns[0]) == want,
                 what="the routed authority rewritten")
    b.close()


def test_rewrite_via_and_send_proxy_together():
    b = service()
    d = Daemon(raw_config="")
    with open(d.config, "w") as f:
        f.write(config(f"127.0.0.1:{d.port}", b.addr,
                       "rewrite_via = on\nsend_proxy = v1"))
    with d:
        s = connect(d.port)
        src, dst = s.getsockname(), s.getpeername()
        session(s, "net.tcp://front/calc", b"one")
        s.close()
        want = header_v1(src, dst) + envelope_bytes(f"net.tcp://{b.addr}/calc", b"one")
        wait_for(lambda: len(b.conns) == 1 and bytes(b.conns[0]) == want,
                 what="the header, then the rewritten preamble")
    b.close()


def test_tls_terminating_route_sends_the_clear_preamble_rewritten():
    """On a route that terminates TLS the backend gets the header, then the
    clear preamble (the Upgrade Request dropped, Preamble End from inside
    TLS) with its Via naming the backend."""
    pki = tempfile.mkdtemp(prefix="nettcpd-pki-")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-days", "2", "-subj", "/CN=localhost", "-keyout", "k.pem",
                    "-out", "c.pem"], cwd=pki, check=True, capture_output=True)
    b = service()
    d = Daemon(raw_config="")
    with open(d.config, "w") as f:
        f.write(config(f"127.0.0.1:{d.port}", b.addr,
                       f"tls = terminate\ntls_cert = {pki}/c.pem\n"
                       f"tls_key = {pki}/k.pem\nsend_proxy = v2\nrewrite_via = on"))
    with d:
        s = connect(d.port)
        src, dst = s.getsockname(), s.getpeername()
        via = "net.tcp://front.example.com/calc/Svc"
        s.sendall(preamble(via, upgrade="application/ssl-tls"))
        assert recv_exact(s, 1) == b"\x0a"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        t = ctx.wrap_socket(s)
        t.sendall(b"\x0c")
        assert recv_exact(t, 1) == b"\x0b"
        t.sendall(sized_envelope(b"secret") + b"\x07")
        assert recv_exact(t, 8) == sized_envelope(b"secret")
        assert recv_exact(t, 1) == b"\x07"
        t.close()
        want = header_v2(src, dst) + envelope_bytes(
            f"net.tcp://{b.addr}/calc/Svc", b"secret")
        wait_for(lambda: len(b.conns) == 1 and bytes(b.conns[0]) == want,
                 what="the header and the clear preamble, rewritten")
    b.close()
    shutil.rmtree(pki, ignore_errors=True)


def test_rewritten_via_over_the_maximum_is_a_fault():
    """A Via of 2,048 bytes that the backend's address would lengthen
    cannot be sent: the client gets EndpointNotFound, the backend nothing."""
    b = service()
    d = Daemon(raw_config="")
    with open(d.config, "w") as f:
        f.write(config(f"127.0.0.1:{d.port}", b.addr, "rewrite_via = on"))
    with d:
        via = "net.tcp://h/calc/"
        via += "p" * (2048 - len(via))
        s = connect(d.port)
        s.sendall(preamble(via))
        got, how = recv_until_close(s)
        assert how == "eof", how
        assert got == fault_record("EndpointNotFound"), got
        d.wait_log("rewrite_via: the Via naming")
        # A Via that still fits after the rewrite is served.
        s = connect(d.port)
        session(s, "net.tcp://h/calc/" + "p" * 1000, b"ok")
        s.close()
        wait_for(lambda: len(b.conns) == 1, what="one backend connection")
    b.close()


def check_config(text):
    d = Daemon(raw_config=text)
    r = subprocess.run([NETTCPD, "-t", "-c", d.config], capture_output=True,
                       text=True)
    return r.returncode, r.stderr, d.config


def test_config_errors_name_file_and_line():
    base = "[global]\nlisten = 127.0.0.1:1\n\n[calc]\nvia = net.tcp://+/calc\nbackend = 127.0.0.1:2\n"
    for keys, line, text in [
            ("send_proxy = v3\n", 7, "bad send_proxy 'v3' (off, v1 or v2)"),
            ("send_proxy = v1\nsend_proxy = v2\n", 8,
             "duplicate key 'send_proxy' (first at line 7)"),
            ("rewrite_via = yes\n", 7, "bad rewrite_via 'yes' (on or off)"),
            ("rewrite_via = on\nrewrite_via = off\n", 8,
             "duplicate key 'rewrite_via' (first at line 7)")]:
        rc, err, path = check_config(base + keys)
        assert rc != 0, err
        assert f"{path}:{line}: {text}" in err, err
    for keys in ("send_proxy = off\nrewrite_via = off\n",
                 "send_proxy = v2\nrewrite_via = on\n"):
        rc, err, _ = check_config(base + keys)
        assert rc == 0, err


if __name__ == "__main__":
    run_tests(globals())
