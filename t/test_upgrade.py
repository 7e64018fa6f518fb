"""Binary upgrade (SIGUSR2, then SIGTERM to the old process), as nginx
does it: the new process serves on the old one's listening sockets, the old
one drains at session boundaries, and a client connecting in a tight loop
through it all is never refused nor reset.  A new binary that fails leaves
the old one serving."""

import os
import re
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, Daemon, free_port, preamble,  # noqa: E402
                          recv_until_close, run_tests, sized_envelope, wait_for)
from test_sessions import Reader, service, session, session_loop  # noqa: E402


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def new_pid(d):
    d.wait_log("binary upgrade: started")
    return int(re.search(r"binary upgrade: started \S+ as pid (\d+)", d.log()).group(1))


def stop_upgraded(pid):
    """SIGTERM to the process an upgrade started (no child of ours), and
    wait for it to go; None or gone already: nothing to do."""
    if pid is not None and alive(pid):
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not alive(pid), what="the new process to exit")


def test_upgrade_hands_over_the_port_without_a_refusal():
    a = service("A")
    stop = threading.Event()
    counts = {"ok": 0, "refused": 0, "reset": 0, "other": 0}

    d = Daemon([("a", "net.tcp://+/A", a.addr)], extra_global="workers = 2").start()
    pid = None
    try:
        busy = d.connect()
        rb = Reader(busy)
        busy.sendall(preamble("net.tcp://h/A"))
        assert rb.record()[0] == 0x0B
        threads = [threading.Thread(target=session_loop, args=(
            d.port, "net.tcp://h/A", ([b"A:hello"],), stop, counts)) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        d.proc.send_signal(signal.SIGUSR2)
        pid = new_pid(d)
        d.wait_log(f"nettcpd[{pid}]: info: nettcpd")   # its "started" line
        assert f"nettcpd[{pid}]: info: listening on 127.0.0.1:{d.port} (socket handed over)" \
            in d.log()
        time.sleep(0.2)
        d.proc.send_signal(signal.SIGTERM)              # the old one drains
        time.sleep(0.3)
        assert d.proc.poll() is None, "the old one left a session in progress"
        busy.sendall(sized_envelope(b"x") + b"\x07")
        assert rb.record() == (0x06, b"A:x")
        assert rb.record()[0] == 0x07
        assert recv_until_close(busy) == (b"", "eof")
        busy.close()
        assert d.proc.wait(5 * SLOW) == 0
        before = counts["ok"]
        time.sleep(0.5)                                 # the new one alone
        stop.set()
        for t in threads:
            t.join()
        print(f"  across the upgrade: {counts}")
        assert counts["ok"] > before, "the new process served nobody"
        assert counts["refused"] == 0 and counts["reset"] == 0 and counts["other"] == 0, counts
        s = d.connect()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        s.close()
    finally:
        stop.set()
        stop_upgraded(pid)
        d.stop()
    a.close()


def test_a_failing_new_binary_leaves_the_old_one_serving():
    """The file is broken when SIGUSR2 comes: the new process exits 1, the
    old one says so and serves on."""
    a = service("A")
    d = Daemon([("a", "net.tcp://+/A", a.addr)]).start()
    try:
        with open(d.config, "a") as f:
            f.write("\n[broken]\nvia = net.tcp://+/B\n")
        d.proc.send_signal(signal.SIGUSR2)
        pid = new_pid(d)
        d.wait_log(f"the new nettcpd (pid {pid}) exited with status 1; this one")
        s = d.connect()
        assert session(s, "net.tcp://h/A") == [b"A:hello"]
        s.close()
    finally:
        d.stop()
    a.close()


def test_the_notice_counts_the_sockets_handed_over():
    """Two listen addresses and the metrics listener: the SIGUSR2 notice
    counts what the new process is given, as its LISTEN_FDS and its "socket
    handed over" lines do."""
    a = service("A")
    port2 = free_port()
    d = Daemon(raw_config="")
    extra = f"metrics = 127.0.0.1:{free_port()}\n"
    with open(d.config, "w") as f:
        f.write(f"[global]\nlisten = 127.0.0.1:{d.port}\nlisten = 127.0.0.1:{port2}\n"
                f"log_level = debug\n{extra}\n[a]\nvia = net.tcp://+/A\nbackend = {a.addr}\n")
    d.start()
    pid = None
    try:
        d.proc.send_signal(signal.SIGUSR2)
        pid = new_pid(d)
        d.wait_log(f"nettcpd[{pid}]: info: nettcpd")   # its "started" line
        want = 3
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read().split(b"\0")
        assert f"LISTEN_FDS={want}".encode() in env, env
        assert d.log().count(f"nettcpd[{pid}]: info: listening on") == want
        assert d.log().count("(socket handed over)") == want
        notice = re.search(r"binary upgrade: started .*", d.log()).group(0)
        assert f"this one's {want} listening sockets" in notice, notice
    finally:
        stop_upgraded(pid)
        d.stop()
    a.close()


if __name__ == "__main__":
    run_tests(globals())
