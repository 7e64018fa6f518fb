"""The daemon's own log: journal-native lines ("<N>" priority prefixes, no
timestamp or pid of its own) when stderr is the journal ($JOURNAL_STREAM)
or log = journal; today's format otherwise; per-client notices limited per
worker, with a count of what was held back that adds up."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_reload import reload  # noqa: E402
from test_systemd import alive  # noqa: E402
from nettcpd_test import (NETTCPD, Daemon, free_port, preamble, recv_until_close,  # noqa: E402
                          run_tests, wait_for)

# At most this many per-client notice and info lines a second per worker:
# log_client_lines' default (nettcpd.ini(5), nettcpd(8) LOGGING).
BURST = 20
PRIORITY = {"error": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z nettcpd\[\d+\]: "
                   r"(error|warning|notice|info|debug): ")
SUPPRESSED = re.compile(r"(\d+) similar lines about clients suppressed")


def journal_daemon(extra=""):
    """A daemon whose stderr file is named by $JOURNAL_STREAM, as systemd
    sets it when StandardError=journal: its device and inode."""
    backend = free_port()
    d = Daemon([("a", "net.tcp://+/A", f"127.0.0.1:{backend}")],
               extra_global="workers = 1\n" + extra)
    open(d.logpath, "wb").close()
    st = os.stat(d.logpath)
    d.env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    return d


def provoke(d):
    """A notice (a malformed preamble) and an info line (a Via no route
    takes), each from a client."""
    s = d.connect()
    s.sendall(b"\x42junk")
    recv_until_close(s)
    s.close()
    s = d.connect()
    s.sendall(preamble("net.tcp://h/Nowhere"))
    recv_until_close(s)
    s.close()


def check_prefixed(text):
    lines = text.splitlines()
    assert lines, text
    for line in lines:
        m = re.match(r"^<([3-7])>", line)
        assert m, (line, text)
        assert not STAMP.match(line[3:]), line
        assert "nettcpd[" not in line, line
    return lines


def test_journal_stream_lines_carry_their_priority():
    """stderr is the journal's stream: each line starts <N>, the syslog
    priority of its level, with no timestamp or pid (the journal adds
    both); the level shows in the priority, not as a word."""
    d = journal_daemon()
    with d:
        provoke(d)
        d.connect().close()      # a debug line: a probe that sent nothing
        d.wait_log("EndpointNotFound")
        d.wait_log("end of stream")
    lines = check_prefixed(d.log())
    assert any(line.startswith("<6>nettcpd ") and " started: " in line
               for line in lines), lines
    assert any(line.startswith("<5>client ") and ", reset" in line for line in lines), lines
    assert any(line.startswith("<7>client ") and "end of stream" in line
               for line in lines), lines
    assert any(line.startswith("<6>stopped") for line in lines), lines


def test_journal_stream_of_another_file_changes_nothing():
    """$JOURNAL_STREAM naming some other file (a shell started from a unit
    whose stderr went elsewhere) leaves today's format; so does a
    malformed one."""
    for value in ("1:1", "not-a-stream", ""):
        d = journal_daemon()
        d.env["JOURNAL_STREAM"] = value
        with d:
            provoke(d)
            d.wait_log("EndpointNotFound")
        for line in d.log().splitlines():
            assert STAMP.match(line), (value, line)


def test_log_journal_without_a_journal_falls_back_to_prefixed_stderr():
    """log = journal: lines go to the journal's socket with their fields;
    where no journald listens (CI has no systemd as PID 1) or nettcpd was
    built without libsystemd, to stderr with <N> prefixes.  With a journald
    on this host the lines went to it: only the start is checked."""
    backend = free_port()
    d = Daemon([("a", "net.tcp://+/A", f"127.0.0.1:{backend}")],
               extra_global="workers = 1\nlog = journal")
    if os.path.exists("/run/systemd/journal/socket"):
        r = subprocess.run([NETTCPD, "-t", "-c", d.config], capture_output=True, text=True)
        assert r.returncode == 0, r
        print("    a journald listens here: only -t was checked")
        return
    with d:
        provoke(d)
        d.wait_log("EndpointNotFound")
    lines = check_prefixed(d.log())
    assert lines[0].startswith("<4>log = journal: "), lines
    assert any(line.startswith("<5>client ") for line in lines), lines


def test_daemonize_says_a_journal_fallback_is_lost():
    """-d puts stderr on /dev/null once serving: log = journal falling back
    to stderr (no journald) says so before the parent returns, as
    log = stderr does."""
    if os.path.exists("/run/systemd/journal/socket"):
        print("    a journald listens here: log = journal does not use stderr")
        return
    work = tempfile.mkdtemp(prefix="nettcpd-test-")
    path = os.path.join(work, "nettcpd.ini")
    with open(path, "w") as f:
        f.write(f"[global]\nlisten = 127.0.0.1:{free_port()}\nlog = journal\n"
                "pidfile = nettcpd.pid\n")
    r = subprocess.run([NETTCPD, "-d", "-c", path], cwd=work, capture_output=True,
                       text=True, timeout=30)
    pidfile = os.path.join(work, "nettcpd.pid")
    try:
        assert r.returncode == 0, r
        assert "-d: log = journal, " in r.stderr and \
            "from here on the log goes to /dev/null" in r.stderr, r.stderr
    finally:
        if os.path.exists(pidfile):
            with open(pidfile) as f:
                pid = int(f.read())
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not alive(pid), 10, what="nettcpd -d to exit")


def test_a_flood_of_bad_preambles_is_rate_limited_and_counted():
    """1,000 malformed preambles from one client, one worker: at most
    BURST notice lines per second, then one line per second saying how
    many were held back; lines shown plus lines held back is exactly
    1,000.  Warnings about the daemon itself are never held back."""
    backend = free_port()
    d = Daemon([("a", "net.tcp://+/A", f"127.0.0.1:{backend}")],
               extra_global="workers = 1", log_level="info")
    n = 1000
    with d:
        started = time.time()
        for _ in range(n):
            s = d.connect()
            s.sendall(b"\x42junk")
            recv_until_close(s)
            s.close()
        elapsed = time.time() - started

        def counted():
            text = d.log()
            shown = sum(1 for line in text.splitlines()
                        if "client " in line and ", reset" in line)
            held = sum(int(m.group(1)) for m in SUPPRESSED.finditer(text))
            return shown + held == n
        wait_for(counted, 5.0, what="every notice shown or counted")
    text = d.log()
    shown = [line for line in text.splitlines() if "client " in line and ", reset" in line]
    held = [int(m.group(1)) for m in SUPPRESSED.finditer(text)]
    assert held and sum(held) > 0, text[-2000:]
    # every window of a second shows at most BURST; the flood took elapsed s
    assert len(shown) <= BURST * (int(elapsed) + 2), (len(shown), elapsed)
    assert len(shown) + sum(held) == n, (len(shown), held)
    print(f"  {n} bad preambles in {elapsed:.2f} s: {len(shown)} lines written, "
          f"{sum(held)} held back, said by {len(held)} count line(s)")
    for line in text.splitlines():
        if SUPPRESSED.search(line):
            assert ": notice: " in line, line


def flood_bad(d, n):
    """n malformed preambles, one after the other; seconds it took."""
    started = time.time()
    for _ in range(n):
        s = d.connect()
        s.sendall(b"\x42junk")
        recv_until_close(s)
        s.close()
    return time.time() - started


def shown_and_held(text):
    shown = sum(1 for line in text.splitlines() if "client " in line and ", reset" in line)
    return shown, sum(int(m.group(1)) for m in SUPPRESSED.finditer(text))


def test_log_client_lines_sets_the_limit_and_a_reload_changes_it():
    """log_client_lines = 5: at most 5 a second, the rest counted; reloaded
    to 0, every line is written and none counted; a bad value is refused
    with FILE:LINE by -t and by the reload."""
    backend = free_port()
    d = Daemon([("a", "net.tcp://+/A", f"127.0.0.1:{backend}")],
               extra_global="workers = 1\nlog_client_lines = 5", log_level="info")
    with d:
        elapsed = flood_bad(d, 200)
        wait_for(lambda: sum(shown_and_held(d.log())) == 200, 5.0,
                 what="200 notices shown or counted")
        shown, held = shown_and_held(d.log())
        assert shown <= 5 * (int(elapsed) + 2) and held >= 200 - shown, (shown, held)
        with open(d.config) as f:
            text = f.read()
        with open(d.config, "w") as f:
            f.write(text.replace("log_client_lines = 5", "log_client_lines = x5"))
        reload(d, want=f"{d.config}:")
        r = subprocess.run([NETTCPD, "-t", "-c", d.config], capture_output=True, text=True)
        assert r.returncode == 1 and f"{d.config}:6: bad log_client_lines 'x5'" in r.stderr, r
        with open(d.config, "w") as f:
            f.write(text.replace("log_client_lines = 5", "log_client_lines = 0"))
        reload(d)
        time.sleep(1.1)     # the 5's last window is over, and said
        before = shown_and_held(d.log())
        flood_bad(d, 100)
        wait_for(lambda: shown_and_held(d.log())[0] == before[0] + 100, 5.0,
                 what="all 100 notices")
        time.sleep(1.1)
        assert shown_and_held(d.log())[1] == before[1], d.log()[-2000:]


def test_a_new_window_shows_notices_again():
    """Once the window that held lines back is over, the next client's
    notice is shown, not counted."""
    backend = free_port()
    d = Daemon([("a", "net.tcp://+/A", f"127.0.0.1:{backend}")],
               extra_global="workers = 1", log_level="info")
    with d:
        # more than BURST in one second, however loaded the machine
        for i in range(BURST * 100):
            s = d.connect()
            s.sendall(b"\x42junk")
            recv_until_close(s)
            s.close()
            if i % BURST == 0 and SUPPRESSED.search(d.log()):
                break
        d.wait_log("similar lines about clients suppressed")
        before = d.log().count(", reset")
        s = d.connect()
        me = "client 127.0.0.1:%d: " % s.getsockname()[1]
        s.sendall(b"\x42junk")
        recv_until_close(s)
        s.close()
        wait_for(lambda: me in d.log(), 5.0, what="the late client's notice")
        assert d.log().count(", reset") == before + 1, d.log()[-2000:]


if __name__ == "__main__":
    run_tests(globals())
