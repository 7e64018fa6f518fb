"""Helpers for nettcpd's integration tests: the real daemon, real backends,
real sockets, all on loopback.

Environment:
  NETTCPD          the daemon binary (set by `make check`)
  NETTCPD_SRCDIR   the source tree
  NETTCPD_WRAPPER  optional command prefix for the daemon, e.g. "valgrind -q
                   --leak-check=full --error-exitcode=99"
  NETTCPD_FORWARD  run only this forward method ("splice", "copy" or
                   "uring"), and give it to every daemon whose [global]
                   names none; by default forwarding tests run with each,
                   the others with splice
"""

import atexit
import os
import random
import resource
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

NETTCPD = os.environ.get("NETTCPD") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "src", "nettcpd")
SRCDIR = os.environ.get("NETTCPD_SRCDIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..")
WRAPPER = shlex.split(os.environ.get("NETTCPD_WRAPPER", ""))
FORWARD_METHODS = [os.environ["NETTCPD_FORWARD"]] if os.environ.get(
    "NETTCPD_FORWARD") else ["splice", "copy", "uring"]
DEFAULT_FORWARD = os.environ.get("NETTCPD_FORWARD") or "splice"
# A daemon under valgrind is many times slower; scale every wait.
SLOW = 10.0 if WRAPPER else 1.0

FAULT_PREFIX = b"http://schemas.microsoft.com/ws/2006/05/framing/faults/"


def raise_fd_limit(want=8192):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, hard), max(want, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ------------------------------------------------------------ framing bytes

def mbint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def string_record(rtype, data):
    if isinstance(data, str):
        data = data.encode()
    return bytes([rtype]) + mbint(len(data)) + data


def preamble(via, mode=2, encoding=8, upgrade=None, end=True, version=(1, 0)):
    out = bytes([0, version[0], version[1], 1, mode]) + string_record(2, via)
    if encoding is not None:
        out += bytes([3, encoding])
    if upgrade is not None:
        out += string_record(9, upgrade)
        return out
    if end:
        out += b"\x0c"
    return out


def fault_record(name):
    uri = FAULT_PREFIX + name.encode()
    return b"\x08" + mbint(len(uri)) + uri


def sized_envelope(payload):
    return b"\x06" + mbint(len(payload)) + payload


# ------------------------------------------------------------ sockets

# Ports for listeners a test names before it starts them.  A port the kernel
# picked with bind(port 0) comes from the ephemeral range, where any process's
# connect() may take it as a source port before the listener binds it (CI's
# sanitizer stage lost test_tshark to exactly that); so these come from below
# that range, at random (a generator of our own: tests seed `random`), and never
# twice in one test program.
_PORTS_RNG = random.Random(os.urandom(16))
_PORTS_GIVEN = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    high = max(_ephemeral_low(), 12000)
    for _ in range(1000):
        port = _PORTS_RNG.randrange(10000, high)
        if port in _PORTS_GIVEN:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    raise AssertionError(f"no free port on {host} below the ephemeral range")


def connect(port, host="127.0.0.1", timeout=5.0):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout * SLOW)
    s.connect((host, port))
    return s


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def recv_until_close(s, limit=1 << 26):
    """Read until EOF; returns (bytes, how) with how = 'eof' or 'reset'."""
    buf = bytearray()
    try:
        while len(buf) < limit:
            chunk = s.recv(1 << 16)
            if not chunk:
                return bytes(buf), "eof"
            buf += chunk
    except ConnectionResetError:
        return bytes(buf), "reset"
    return bytes(buf), "limit"


def reset(s):
    """Close with RST instead of FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


# ------------------------------------------------------------ backends

class Backend:
    """A TCP server on loopback, or with path= a unix stream socket there.
    Each accepted connection is handed to handler(conn_socket, backend) on
    its own thread.  Received preambles and connection counts are recorded
    for assertions."""

    def __init__(self, handler=None, host="127.0.0.1", name="backend", path=None,
                 backlog=4096):
        self.name = name
        self.handler = handler or echo_handler
        self.path = path
        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(path)
            self.port = None
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, 0))
            self.port = self.sock.getsockname()[1]
        self.sock.listen(backlog)
        self.host = host
        self.accepted = 0
        self.received = []      # first bytes of each connection, see record_first
        self.lock = threading.Lock()
        self.stopping = False
        self.threads = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    @property
    def addr(self):
        if self.path is not None:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def _loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()

    def _serve(self, c):
        try:
            c.settimeout(30 * SLOW)
            self.handler(c, self)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def close(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


def echo_handler(c, backend):
    """Acknowledge the preamble like a WCF service, then echo everything."""
    data = read_preamble(c)
    with backend.lock:
        backend.received.append(data)
    c.sendall(b"\x0b" + backend.name.encode())
    while True:
        chunk = c.recv(1 << 16)
        if not chunk:
            c.shutdown(socket.SHUT_WR)
            return
        c.sendall(chunk)


def read_preamble(c):
    """Read through Preamble End (0x0C) or an Upgrade Request record."""
    buf = bytearray()
    while True:
        chunk = c.recv(1)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if complete_preamble(bytes(buf)):
            return bytes(buf)


def complete_preamble(buf):
    """True if buf is a whole preamble ending in 0x0C or an Upgrade Request."""
    i = 0

    def take_mbint(i):
        v, shift = 0, 0
        while i < len(buf):
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v, i
        return None, i

    while i < len(buf):
        t = buf[i]
        i += 1
        if t in (0,):
            i += 2
        elif t in (1, 3):
            i += 1
        elif t in (2, 4, 9):
            n, i = take_mbint(i)
            if n is None:
                return False
            i += n
            if t == 9 and i <= len(buf):
                return True
        elif t == 0x0C:
            return i == len(buf)
        else:
            return False
    return False


# ------------------------------------------------------------ the daemon

# Every daemon a test started, so none outlives the test program even when
# a test fails between start() and stop().
RUNNING = []


@atexit.register
def _kill_leftover_daemons():
    for d in RUNNING:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


class Daemon:
    def __init__(self, routes=(), listen=None, extra_global="", forward=DEFAULT_FORWARD,
                 raw_config=None, rlimit_nofile=None, log_level="debug", env=None):
        self.dir = tempfile.mkdtemp(prefix="nettcpd-test-")
        self.port = free_port()
        self.listen = listen or f"127.0.0.1:{self.port}"
        self.config = os.path.join(self.dir, "nettcpd.ini")
        if raw_config is None:
            lines = ["[global]", f"listen = {self.listen}", f"forward = {forward}",
                     f"log_level = {log_level}", extra_global.strip(), ""]
            for name, vias, backend in routes:
                lines.append(f"[{name}]")
                for v in ([vias] if isinstance(vias, str) else vias):
                    lines.append(f"via = {v}")
                lines.append(f"backend = {backend}")
                lines.append("")
            raw_config = "\n".join(lines)
        with open(self.config, "w") as f:
            f.write(raw_config)
        self.logpath = os.path.join(self.dir, "stderr.log")
        self.rlimit_nofile = rlimit_nofile
        self.env = env
        self.proc = None

    def start(self):
        if DEFAULT_FORWARD != "splice":
            self.default_forward()
        log = open(self.logpath, "wb")

        def limit():
            if self.rlimit_nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE,
                                   (self.rlimit_nofile, self.rlimit_nofile))

        # Not the runner's standard input: under CI it is a pipe, which
        # assert_no_leak would count with the pipe pool's.
        self.proc = subprocess.Popen(WRAPPER + [NETTCPD, "-c", self.config],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     preexec_fn=limit, env=self.env)
        log.close()
        RUNNING.append(self)
        deadline = time.time() + 10 * SLOW
        while time.time() < deadline:
            if "started" in self.log():
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"nettcpd exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        raise AssertionError("nettcpd did not start:\n" + self.log())

    def default_forward(self):
        """NETTCPD_FORWARD: a configuration written without a forward key
        gets one, so that the whole suite runs with that method."""
        with open(self.config) as f:
            lines = f.read().split("\n")
        if "[global]" not in lines or any(
                ln.split("=")[0].strip() == "forward" for ln in lines):
            return
        at = lines.index("[global]") + 1
        lines.insert(at, f"forward = {DEFAULT_FORWARD}")
        with open(self.config, "w") as f:
            f.write("\n".join(lines))

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, text, timeout=5.0):
        deadline = time.time() + timeout * SLOW
        while time.time() < deadline:
            if text in self.log():
                return True
            time.sleep(0.02)
        raise AssertionError(f"log never showed {text!r}:\n{self.log()}")

    @property
    def pid(self):
        return self.proc.pid

    def fds(self):
        """The daemon's open descriptors, as readlink shows them."""
        out = []
        base = f"/proc/{self.pid}/fd"
        for name in os.listdir(base):
            try:
                out.append(os.readlink(os.path.join(base, name)))
            except FileNotFoundError:
                pass
        return out

    def sockets(self):
        return sum(1 for f in self.fds() if f.startswith("socket:"))

    def pipes(self):
        return sum(1 for f in self.fds() if f.startswith("pipe:"))

    def assert_no_leak(self, base_sockets, timeout=5.0):
        """Every connection's sockets are closed and the pipe pool stays
        within its bound (8 pipes, 16 descriptors)."""
        wait_for(lambda: self.sockets() == base_sockets, timeout,
                 what=f"sockets back to {base_sockets}")
        assert self.pipes() <= 16, self.fds()

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def connect(self, **kw):
        return connect(self.port, **kw)

    def stop(self, sig=signal.SIGTERM, timeout=5.0, drain=1.0):
        """Stop the daemon and return its exit status.  The first signal
        drains, letting sessions in progress end; after drain seconds a
        second one makes it exit at once (t/test_drain.py tests both)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(drain * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("nettcpd did not exit after " + sig.name)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        status = self.stop()
        if exc[0] is None:
            assert status == 0, f"nettcpd exited {status}:\n{self.log()}"


def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = time.time() + timeout * SLOW
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------ test runner

def own_tempdir():
    """Every temporary directory of this program (each daemon's, and the
    tests' own) goes under one of its own, which drop_tempdir removes."""
    tempfile.tempdir = tempfile.mkdtemp(prefix=f"nettcpd-{os.path.basename(sys.argv[0])[:-3]}-")
    # as /tmp lets them, others may reach what a test opens to them (the
    # privilege tests' service user)
    os.chmod(tempfile.tempdir, 0o755)


def drop_tempdir(ok):
    """Removed when everything passed; kept, its path printed, for the logs
    of a failure."""
    if ok:
        shutil.rmtree(tempfile.tempdir, ignore_errors=True)
    else:
        print(f"the tests' files are kept in {tempfile.tempdir}")


def run_tests(namespace):
    """Run every test_* function in namespace, or those named on the
    command line; print one line per test and the summary line; exit 1 if
    any failed."""
    raise_fd_limit()
    own_tempdir()
    tests = [(n, f) for n, f in sorted(namespace.items())
             if n.startswith("test_") and callable(f)
             and (len(sys.argv) < 2 or n in sys.argv[1:])]
    passed = failed = 0
    for name, fn in tests:
        started = time.time()
        try:
            fn()
        except Exception:
            failed += 1
            print(f"FAIL {name} ({time.time() - started:.2f}s)")
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok   {name} ({time.time() - started:.2f}s)")
        sys.stdout.flush()
    print(f"{os.path.basename(sys.argv[0])}: {passed} passed, {failed} failed")
    drop_tempdir(failed == 0)
    sys.exit(1 if failed else 0)
