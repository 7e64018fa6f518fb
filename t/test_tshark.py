"""Wireshark's MC-NMF dissector as an independent oracle.

Preambles of many shapes go through the real daemon while tshark captures
loopback.  tshark, not our parser, then says which Via each client sent; the
test checks that the same Via reached the backend the route table names for
it (so parser, normaliser and matcher agree with Wireshark), and that tshark
reads our Fault records as the fault we meant.

Needs tshark and permission to capture on lo (root in CI); otherwise it is
skipped with a notice (exit 77).
"""

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (Backend, Daemon, FAULT_PREFIX, preamble, recv_exact,  # noqa: E402
                          recv_until_close, run_tests, string_record)


def skip(why):
    print(f"SKIP: test_tshark: {why}")
    sys.exit(77)


def capture(ports, work):
    pcap = os.path.join(work, "nmf.pcap")
    flt = " or ".join(f"tcp port {p}" for p in ports)
    err = open(os.path.join(work, "tshark.err"), "w+")
    proc = subprocess.Popen(["tshark", "-i", "lo", "-f", flt, "-w", pcap, "-q"],
                            stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 20
    while time.time() < deadline:
        err.seek(0)
        text = err.read()
        if "Capturing on" in text:
            break
        if proc.poll() is not None:
            skip("tshark cannot capture on lo: " + text.strip().splitlines()[-1])
        time.sleep(0.05)
    else:
        proc.kill()
        skip("tshark did not start capturing")
    return proc, pcap


def wait_until_captured(d, pcap):
    """tshark says "Capturing on" before dumpcap really captures: send
    canary connections until the file holds packets."""
    deadline, sent = time.time() + 20, 0
    while time.time() < deadline:
        sent += 1
        s = d.connect()
        s.sendall(preamble("net.tcp://canary.invalid/nowhere"))
        recv_until_close(s)
        s.close()
        time.sleep(0.2)
        if os.path.exists(pcap) and os.path.getsize(pcap) > 4096:
            return sent
    skip("tshark captured nothing on lo")


def dissect(pcap, ports):
    args = ["tshark", "-r", pcap, "-T", "fields", "-E", "separator=\t",
            "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "mc-nmf.via",
            "-e", "mc-nmf.fault", "-e", "mc-nmf.upgrade"]
    for p in ports:
        args += ["-d", f"tcp.port=={p},mc-nmf"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        src, dst, via, fault, upgrade = (line.split("\t") + [""] * 5)[:5]
        rows.append((int(src), int(dst), via, fault, upgrade))
    return rows


def test_wireshark_agrees_with_the_routing():
    if shutil.which("tshark") is None:
        skip("tshark not installed (apt-get install tshark)")
    rng = random.Random(808)
    a, b = Backend(name="A"), Backend(name="B")
    routes = [("a", "net.tcp://+/Alpha", a.addr), ("b", "net.tcp://+/Alpha/Beta", b.addr)]
    work = tempfile.mkdtemp(prefix="nettcpd-tshark-")
    with Daemon(routes) as d:
        ports = [d.port, a.port, b.port]
        proc, pcap = capture(ports, work)
        canaries = wait_until_captured(d, pcap)
        expected = {}     # Via -> backend port, or None for a fault
        for i in range(40):
            target = rng.choice(["Alpha", "ALPHA/beta", "Alpha/Beta/x", "alpha/x", "Gamma"])
            pad = "p" * rng.choice([0, 5, 120, 300, 1500])   # 1- and 2-byte size fields
            via = f"net.tcp://host{i}.example.test:{rng.randint(1, 65535)}/{target}/{pad}{i}"
            mode = rng.choice([1, 2])
            kw = {}
            if rng.random() < 0.3:
                kw["upgrade"] = rng.choice(["application/ssl-tls", "application/negotiate"])
            pre = preamble(via, mode=mode, **kw)
            if rng.random() < 0.3:    # extensible encoding instead of a known one
                pre = preamble(via, mode=mode, encoding=None, end=False) + \
                    string_record(4, "application/soap+msbinsession1+gzip") + b"\x0c"
            s = d.connect()
            # one segment: the dissector does not reassemble a record split
            # across segments (splits are covered by the unit tests)
            s.sendall(pre)
            if target == "Gamma":
                got, _ = recv_until_close(s)
                assert got[:1] == b"\x08"
                expected[via] = None
            else:
                reply = recv_exact(s, 2)
                assert reply[:1] == b"\x0b"
                deep = target.lower().startswith("alpha/beta")
                assert reply[1:] == (b"B" if deep else b"A"), (via, reply)
                expected[via] = b.port if deep else a.port
            s.close()
        time.sleep(0.5)
        proc.terminate()
        proc.wait(10)
    rows = dissect(pcap, ports)
    canary = "net.tcp://canary.invalid/"
    rows = [r for r in rows if not r[2].startswith(canary)]
    client_vias = {r[2] for r in rows if r[1] == d.port and r[2]}
    assert client_vias == set(expected), (
        "tshark saw other Vias than were sent: missing %r, extra %r" %
        (sorted(set(expected) - client_vias)[:3], sorted(client_vias - set(expected))[:3]))
    for via, backend_port in expected.items():
        legs = [r for r in rows if r[2] == via and r[1] != d.port]
        if backend_port is None:
            assert legs == [], f"unroutable {via} reached a backend"
        else:
            assert [r[1] for r in legs] == [backend_port], (via, legs)
    faults = [r[3] for r in rows if r[0] == d.port and r[3]]
    # every unroutable Via got a fault, and so did the canaries tshark saw
    unroutable = sum(1 for v in expected.values() if v is None)
    assert unroutable <= len(faults) <= unroutable + canaries, (len(faults), unroutable)
    assert set(faults) == {(FAULT_PREFIX + b"EndpointNotFound").decode()}
    shutil.rmtree(work)
    a.close()
    b.close()


if __name__ == "__main__":
    run_tests(globals())
