"""Paths nettcpd writes, against the user it drops to: that user owns the
directory of the access log (SIGUSR1 reopens it as the user) and of the
pid file, and plants a symbolic or a hard link there to a file only root
may write.  Root must not create, truncate or append to that file: the
access log and the pid file are opened as the user, after the drop, with
links refused; root without 'user' refuses a directory anyone else can
write.  Needs root (else SKIP, exit 77) and the accounts nobody and
nogroup."""

import os
import pwd
import re
import shutil
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nettcpd_test  # noqa: E402
from nettcpd_test import (Daemon, preamble, recv_until_close,  # noqa: E402
                          run_tests, wait_for)

SECRET = b"root only\n"


class Rooms:
    """A directory the user owns (where nettcpd writes) and one only root
    may enter, holding a root-only file, in a base the user may cross."""

    def __init__(self):
        pw = pwd.getpwnam("nobody")
        self.base = tempfile.mkdtemp(prefix="nettcpd-paths-")
        os.chmod(self.base, 0o711)
        self.user_dir = os.path.join(self.base, "user")
        os.mkdir(self.user_dir, 0o755)
        os.chown(self.user_dir, pw.pw_uid, pw.pw_gid)
        self.root_dir = os.path.join(self.base, "root")
        os.mkdir(self.root_dir, 0o700)
        self.secret = os.path.join(self.root_dir, "secret")
        with open(self.secret, "wb") as f:
            f.write(SECRET)
        os.chmod(self.secret, 0o600)
        self.missing = os.path.join(self.root_dir, "created")

    def user_path(self, name):
        return os.path.join(self.user_dir, name)

    def untouched(self):
        with open(self.secret, "rb") as f:
            assert f.read() == SECRET, "the root-only file was written"
        assert not os.path.lexists(self.missing), "root created a file for the user"

    def close(self):
        shutil.rmtree(self.base, ignore_errors=True)


def one_record(d):
    """A client no route serves: the access log gets its record."""
    s = d.connect()
    s.sendall(preamble("net.tcp://localhost/Nowhere"))
    recv_until_close(s)
    s.close()


def run(d):
    """Start d; if it serves, let it write one record and stop it.
    Returns whether it started."""
    try:
        d.start()
    except AssertionError:
        return False
    one_record(d)
    d.stop()
    return True


def refused(d, path, why):
    """d would not start, and said which path and why."""
    assert not run(d), f"nettcpd started:\n{d.log()}"
    assert d.proc.returncode == 1, d.proc.returncode
    assert f"'{path}'" in d.log() and why in d.log(), d.log()


def test_access_log_symlink_planted_by_the_user_is_refused():
    r = Rooms()
    log = r.user_path("access.log")
    for target in (r.secret, r.missing):
        if os.path.lexists(log):
            os.unlink(log)
        os.symlink(target, log)
        refused(Daemon(extra_global=f"user = nobody\naccess_log = {log}"),
                log, "symbolic link")
        r.untouched()
    r.close()


def test_access_log_hard_link_to_a_root_file_is_refused():
    """Root plants it here, as a kernel without protected_hardlinks would
    let the user do."""
    r = Rooms()
    log = r.user_path("access.log")
    os.link(r.secret, log)
    refused(Daemon(extra_global=f"user = nobody\naccess_log = {log}"), log,
            "Permission denied")
    r.untouched()
    # one the user could write anyway: refused all the same, by its links
    os.unlink(log)
    shared = os.path.join(r.root_dir, "shared")
    with open(shared, "wb") as f:
        f.write(SECRET)
    os.chmod(shared, 0o666)
    os.link(shared, log)
    refused(Daemon(extra_global=f"user = nobody\naccess_log = {log}"), log,
            "refused: a file with 2 hard links")
    with open(shared, "rb") as f:
        assert f.read() == SECRET
    r.close()


def test_access_log_is_opened_as_the_user():
    r = Rooms()
    log = r.user_path("access.log")
    d = Daemon(extra_global=f"user = nobody\naccess_log = {log}")
    assert run(d), d.log()
    st = os.stat(log)
    assert st.st_uid == pwd.getpwnam("nobody").pw_uid, st
    with open(log) as f:
        assert '"outcome":' in f.read()
    r.close()


def test_sigusr1_refuses_a_symlink_planted_after_the_start():
    """logrotate moved the log away, the user put a link in its place: the
    reopen is refused with a line, and records go on to the old file."""
    r = Rooms()
    log = r.user_path("access.log")
    with Daemon(extra_global=f"user = nobody\naccess_log = {log}") as d:
        os.rename(log, log + ".1")
        os.symlink(r.missing, log)
        d.proc.send_signal(signal.SIGUSR1)
        d.wait_log(f"access_log '{log}': refused: a symbolic link")
        one_record(d)
    r.untouched()
    with open(log + ".1") as f:
        assert '"outcome":' in f.read()
    r.close()


def test_root_without_user_refuses_a_directory_others_may_write():
    """No user to drop to: root opens the log itself, so its directory must
    be root's alone."""
    r = Rooms()
    world = os.path.join(r.base, "world")
    os.mkdir(world)
    os.chmod(world, 0o1777)
    for directory in (r.user_dir, world):
        log = os.path.join(directory, "access.log")
        refused(Daemon(extra_global=f"access_log = {log}"), log,
                "its directory is writable by")
        assert not os.path.exists(log)
    r.close()


def test_pidfile_is_written_and_removed_as_the_user():
    r = Rooms()
    pidfile = r.user_path("nettcpd.pid")
    with Daemon(extra_global=f"user = nobody\npidfile = {pidfile}") as d:
        st = os.stat(pidfile)
        assert st.st_uid == pwd.getpwnam("nobody").pw_uid, st
        with open(pidfile) as f:
            assert int(f.read()) == d.pid
    assert not os.path.exists(pidfile)
    r.close()


def test_pidfile_link_planted_by_the_user_is_refused():
    r = Rooms()
    pidfile = r.user_path("nettcpd.pid")
    os.symlink(r.missing, pidfile)
    refused(Daemon(extra_global=f"user = nobody\npidfile = {pidfile}"),
            pidfile, "symbolic link")
    os.unlink(pidfile)
    os.link(r.secret, pidfile)
    refused(Daemon(extra_global=f"user = nobody\npidfile = {pidfile}"),
            pidfile, "")
    r.untouched()
    r.close()


def test_a_replaced_pidfile_is_not_removed_at_exit():
    """Same text, another file: not the one nettcpd wrote, so it stays."""
    r = Rooms()
    pidfile = r.user_path("nettcpd.pid")
    with Daemon(extra_global=f"user = nobody\npidfile = {pidfile}") as d:
        wait_for(lambda: os.path.exists(pidfile), what="the pid file")
        os.unlink(pidfile)
        with open(pidfile, "w") as f:
            f.write(f"{d.pid}\n")
    assert os.path.exists(pidfile), "nettcpd removed a file it did not write"
    r.close()


def running(pid):
    """Not gone, and not a zombie left to an init that does not reap."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_binary_upgrade_rewrites_the_pidfile_and_the_last_process_removes_it():
    """SIGUSR2 as nobody: the new process writes its pid into the same file
    (it is the user's), the old one leaves it at exit, the new one removes
    it.  The new binary is a copy nobody may run (the build tree may sit
    under a 0700 directory)."""
    r = Rooms()
    pidfile = r.user_path("nettcpd.pid")
    d = Daemon(extra_global=f"user = nobody\npidfile = {pidfile}")
    os.chmod(d.dir, 0o755)
    os.chmod(d.config, 0o644)
    binary = os.path.join(r.base, "nettcpd")
    shutil.copy(nettcpd_test.NETTCPD, binary)
    os.chmod(binary, 0o755)
    saved, nettcpd_test.NETTCPD = nettcpd_test.NETTCPD, binary
    new = None
    try:
        d.start()
        inode = os.stat(pidfile).st_ino
        d.proc.send_signal(signal.SIGUSR2)
        d.wait_log("binary upgrade: started")
        new = int(re.search(r"binary upgrade: started \S+ as pid (\d+)",
                            d.log()).group(1))
        d.wait_log(f"nettcpd[{new}]: info: nettcpd")   # its "started" line
        with open(pidfile) as f:
            assert int(f.read()) == new
        assert os.stat(pidfile).st_ino == inode
        assert d.stop() == 0
        with open(pidfile) as f:
            assert int(f.read()) == new, "the old process touched the new one's pid file"
        os.kill(new, signal.SIGTERM)
        wait_for(lambda: not running(new), 10, what="the new process to exit")
        new = None
        assert not os.path.exists(pidfile), "the new process left its pid file"
    finally:
        nettcpd_test.NETTCPD = saved
        if new is not None and running(new):
            os.kill(new, signal.SIGKILL)
        d.stop()
    r.close()


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("SKIP: test_paths: needs root")
        sys.exit(77)
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        print("SKIP: test_paths: no user nobody")
        sys.exit(77)
    run_tests(globals())
