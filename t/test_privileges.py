"""Dropping root (user = / group = in [global]): started as root, nettcpd
serves as the user, every thread with CAP_NET_BIND_SERVICE as its only
capability and no way back to root; a reload after the drop still binds a
port below 1024 and reads a renewed certificate.  An account that does not
exist is refused by FILE:LINE; root without 'user' is warned about.
Needs root (else SKIP, exit 77) and the accounts nobody and nogroup."""

import grp
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import NETTCPD, Daemon, free_port, run_tests  # noqa: E402
from test_reload import reload  # noqa: E402
from test_sessions import service, session  # noqa: E402

CAP_NET_BIND_SERVICE = 10


def skip(why):
    print(f"SKIP: test_privileges: {why}")
    sys.exit(77)


def status(path):
    """/proc/.../status as a dict of its fields."""
    with open(path) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def assert_dropped(pid, user="nobody", group="nogroup"):
    """The process and each of its threads: every uid and gid the user's,
    the user's groups, CAP_NET_BIND_SERVICE alone, no new privileges."""
    pw, gid = pwd.getpwnam(user), grp.getgrnam(group).gr_gid
    uid = pw.pw_uid
    groups = sorted(os.getgrouplist(user, gid))
    tasks = [f"/proc/{pid}/task/{t}/status" for t in os.listdir(f"/proc/{pid}/task")]
    assert len(tasks) > 1, "no worker thread to check"
    for path in [f"/proc/{pid}/status"] + tasks:
        st = status(path)
        assert st["Uid"].split() == [str(uid)] * 4, (path, st["Uid"])
        assert st["Gid"].split() == [str(gid)] * 4, (path, st["Gid"])
        assert sorted(int(g) for g in st["Groups"].split()) == groups, (path, st["Groups"])
        for cap in ("CapEff", "CapPrm", "CapBnd"):
            assert int(st[cap], 16) == 1 << CAP_NET_BIND_SERVICE, (path, cap, st[cap])
        assert int(st["CapInh"], 16) == 0, (path, st["CapInh"])
        assert int(st["CapAmb"], 16) == 0, (path, st["CapAmb"])
        assert st["NoNewPrivs"] == "1", (path, st["NoNewPrivs"])


def readable_by_all(d):
    """The user reads the file again on a reload: open the test's directory."""
    os.chmod(d.dir, 0o755)
    os.chmod(d.config, 0o644)


def test_drops_to_nobody_in_every_thread_and_still_routes():
    """The workers and the metrics thread alike."""
    a = service("A")
    mport = free_port()
    d = Daemon(routes=[("a", "net.tcp://+/A", a.addr)],
               extra_global=f"user = nobody\nworkers = 2\nmetrics = 127.0.0.1:{mport}")
    with d:
        assert "running as user nobody" in d.log(), d.log()
        assert len(os.listdir(f"/proc/{d.pid}/task")) >= 4
        assert_dropped(d.pid)
        s = d.connect()
        assert session(s, "net.tcp://localhost/A") == [b"A:hello"]
        s.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics",
                                    timeout=5) as r:
            assert b"nettcpd_connections_accepted_total 1" in r.read()
    a.close()


def test_group_names_the_primary_group():
    d = Daemon(extra_global="user = nobody\ngroup = nogroup")
    with d:
        assert_dropped(d.pid)


def test_unknown_user_or_group_is_refused_by_line():
    for key, text in (("user", "user = no-such-user-nettcpd"),
                      ("group", "user = nobody\ngroup = no-such-group-nettcpd")):
        d = Daemon(extra_global=text)
        line = next(i for i, t in enumerate(open(d.config), 1)
                    if t.startswith(f"{key} ="))
        want = f"{d.config}:{line}: unknown {key} 'no-such-{key}-nettcpd'"
        for args in (["-t", "-c", d.config], ["-c", d.config]):
            r = subprocess.run([NETTCPD, *args], capture_output=True, text=True, timeout=10)
            assert r.returncode == 1, (args, r.returncode, r.stderr)
            assert want in r.stderr, (args, r.stderr)


def test_root_without_user_is_warned_about():
    with Daemon() as d:
        d.wait_log("running as root: set 'user' in [global]")
        assert d.log().count("running as root") == 1, d.log()


def test_another_user_cannot_take_a_user_it_is_not():
    """Not root, and user names someone else: nothing to drop with, so no
    start.  (nobody asked to become daemon.)"""
    d = Daemon(extra_global="user = daemon")
    readable_by_all(d)
    # nobody may not reach the build tree (a checkout under a 0700
    # directory): it runs a copy of the binary, from the test's directory
    binary = os.path.join(d.dir, "nettcpd")
    shutil.copy(NETTCPD, binary)
    os.chmod(binary, 0o755)
    r = subprocess.run([binary, "-c", d.config], capture_output=True, text=True,
                       timeout=10, user="nobody", group="nogroup", extra_groups=[])
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "user = daemon, but nettcpd runs as uid" in r.stderr, r.stderr


def low_port():
    """808 if it is free on 127.0.0.1, else a free one from 600 to 1023."""
    for port in [808] + list(range(600, 1024)):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise AssertionError("no free port below 1024")


def leaf_der(path):
    with open(path) as f:
        pem = f.read()
    end = "-----END CERTIFICATE-----"
    return ssl.PEM_cert_to_DER_cert(pem[:pem.index(end) + len(end)] + "\n")


def test_reload_after_the_drop_binds_below_1024_and_reads_a_new_certificate():
    """As nobody, a reload adds 127.0.0.1:808 (or another port below 1024)
    and swaps the TLS route's certificate and key for new ones: the new
    port routes, and a new TLS client is shown the new certificate."""
    import test_tls
    from test_tls_sessions import second_certificate, tls_session
    test_tls.make_pki()
    second_certificate()
    pki = test_tls.PKI
    os.chmod(pki, 0o755)       # test keys: the user must read them on the reload
    for name in os.listdir(pki):
        os.chmod(os.path.join(pki, name), 0o644)
    a = service("A")
    low = low_port()

    def write(d, listen, cert, key):
        text = (f"[global]\nlisten = {listen}\nlog_level = debug\nuser = nobody\n\n"
                f"[plain]\nvia = net.tcp://+/Plain\nbackend = {a.addr}\n\n"
                f"[one]\nvia = net.tcp://+/One\nbackend = {a.addr}\ntls = terminate\n"
                f"tls_cert = {os.path.join(pki, cert)}\ntls_key = {os.path.join(pki, key)}\n")
        with open(d.config + ".new", "w") as f:
            f.write(text)
        os.chmod(d.config + ".new", 0o644)
        os.replace(d.config + ".new", d.config)

    d = Daemon(raw_config="")
    readable_by_all(d)
    write(d, f"127.0.0.1:{d.port}", "server.pem", "server.key")
    with d:
        assert_dropped(d.pid)
        first = tls_session(d.connect(), "net.tcp://localhost/One", [b"1"], b"A")
        assert first == leaf_der(os.path.join(pki, "server.pem"))
        write(d, f"127.0.0.1:{d.port}, 127.0.0.1:{low}", "second.pem", "second.key")
        reload(d)
        d.wait_log(f"listening on 127.0.0.1:{low}")
        s = socket.create_connection(("127.0.0.1", low), timeout=5)
        assert session(s, "net.tcp://localhost/Plain") == [b"A:hello"]
        s.close()
        new = tls_session(d.connect(), "net.tcp://localhost/One", [b"2"], b"A")
        assert new == leaf_der(os.path.join(pki, "second.pem")), \
            "the reload did not read the new certificate"
        # the reload changed nothing of who it runs as
        assert_dropped(d.pid)
    a.close()


if __name__ == "__main__":
    if os.geteuid() != 0:
        skip("not root: dropping root needs root")
    try:
        pwd.getpwnam("nobody")
        grp.getgrnam("nogroup")
    except KeyError:
        skip("no user nobody or group nogroup")
    run_tests(globals())
