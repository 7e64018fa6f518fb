"""The shipped /etc/logrotate.d/nettcpd (debian/nettcpd.logrotate), run by
the real logrotate -f on a daemon that serves as nobody: only what names
this machine is changed (the log directory, the account of 'su', which is
nettcpd's once the package is installed, and the postrotate command, a
kill -USR1 of this daemon for the packaged systemctl kill).  Every record
written before the rotation is in the rotated file, every later one in
the new file, none lost or doubled, also with clients connecting while it
rotates.  Needs root (su, user =; else SKIP, exit 77), logrotate and the
accounts nobody and nogroup."""

import gzip
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, SRCDIR, Daemon, preamble,  # noqa: E402
                          recv_until_close, run_tests, wait_for)

SHIPPED = os.path.join(SRCDIR, "debian", "nettcpd.logrotate")


def config_from_shipped(log_dir, pid):
    """The shipped file with its directory, its account and its postrotate
    command replaced, each checked to be there once."""
    with open(SHIPPED) as f:
        text = f.read()
    for old, new in ((r"^/var/log/nettcpd/", log_dir + "/"),
                     (r"^(\s*)su nettcpd nettcpd$", r"\g<1>su nobody nogroup")):
        text, n = re.subn(old, new, text, flags=re.M)
        assert n == 1, (old, text)
    text, n = re.subn(r"(\n\s*postrotate\n).*?(\n\s*endscript\n)",
                      rf"\g<1>\t\tkill -USR1 {pid}\g<2>", text, flags=re.S)
    assert n == 1, text
    return text


def record(d, tag):
    """One client whose Via no route serves: one record, tagged."""
    s = d.connect()
    s.sendall(preamble(f"net.tcp://localhost/{tag}"))
    recv_until_close(s)
    s.close()


def tags(path):
    """The tags of the records in path (compressed if .gz), in order."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rt") as f:
            return [json.loads(line)["via"].rsplit("/", 1)[1] for line in f]
    except FileNotFoundError:
        return []


class Rotation:
    """A log directory nobody owns in a base nobody may cross, a daemon as
    nobody writing its access log there, the state file beside it."""

    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="nettcpd-logrotate-")
        os.chmod(self.base, 0o711)
        self.logs = os.path.join(self.base, "logs")
        os.mkdir(self.logs, 0o755)
        pw = pwd.getpwnam("nobody")
        os.chown(self.logs, pw.pw_uid, pw.pw_gid)
        self.log = os.path.join(self.logs, "access.log")
        self.d = Daemon(extra_global=f"user = nobody\naccess_log = {self.log}")

    def rotate(self):
        """logrotate -f on the shipped file; then wait for the reopen."""
        conf = os.path.join(self.base, "nettcpd.logrotate")
        with open(conf, "w") as f:
            f.write(config_from_shipped(self.logs, self.d.pid))
        reopened = self.d.log().count("access log reopened")
        r = subprocess.run(["logrotate", "-f", "-s",
                            os.path.join(self.base, "state"), conf],
                           capture_output=True, text=True, timeout=30 * SLOW)
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        assert "error" not in r.stderr, r.stderr
        wait_for(lambda: self.d.log().count("access log reopened") > reopened,
                 what="the reopen on SIGUSR1")

    def close(self):
        shutil.rmtree(self.base, ignore_errors=True)


def test_records_before_go_to_the_rotated_file_after_to_the_new_one():
    """Twice: the second rotation compresses the first's file
    (delaycompress), which nettcpd no longer writes."""
    r = Rotation()
    rounds = [[f"round{n}-{i}" for i in range(20)] for n in range(3)]
    with r.d:
        for n, batch in enumerate(rounds):
            for t in batch:
                record(r.d, t)
            # written within a second (each worker's buffer, so in any
            # order)
            wait_for(lambda: sorted(tags(r.log)) == sorted(batch), 5,
                     what=f"round {n}'s records")
            if n < 2:
                r.rotate()
    for path, batch in ((r.log + ".2.gz", rounds[0]), (r.log + ".1", rounds[1]),
                        (r.log, rounds[2])):
        assert sorted(tags(path)) == sorted(batch), (path, tags(path))
    st = os.stat(r.log)
    assert st.st_uid == pwd.getpwnam("nobody").pw_uid, st
    r.close()


def test_no_record_lost_while_clients_connect_during_the_rotation():
    r = Rotation()
    sent, stop = [], threading.Event()

    def clients():
        i = 0
        while not stop.is_set() and i < 5000:
            record(r.d, f"during{i}")
            sent.append(f"during{i}")
            i += 1

    with r.d:
        t = threading.Thread(target=clients)
        t.start()
        try:
            # notifempty: records must have reached the file (within a
            # second)
            wait_for(lambda: len(tags(r.log)) >= 50, 10,
                     what="records before the rotation")
            r.rotate()
            n = len(sent)
            wait_for(lambda: len(sent) >= n + 50, 10, what="clients after the rotation")
        finally:
            stop.set()
            t.join()
    got = tags(r.log + ".1") + tags(r.log)
    assert sorted(got) == sorted(sent), (len(got), len(sent))
    assert tags(r.log + ".1") and tags(r.log), "one side of the rotation is empty"
    r.close()


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("SKIP: test_logrotate: needs root")
        sys.exit(77)
    if shutil.which("logrotate") is None:
        print("SKIP: test_logrotate: no logrotate (scripts/install-deps installs it)")
        sys.exit(77)
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        print("SKIP: test_logrotate: no user nobody")
        sys.exit(77)
    run_tests(globals())
