"""Eviction at max_pending is fair by source: a flood of connections from
one address, each sending one byte of a preamble and holding, cannot make
the preambles of other addresses give way, even those that take several
round trips (a preamble in pieces, a TLS handshake).

A flooder (a thread, a bounded loop) opens FLOOD_RATE connections a second
from one source; meanwhile clients from other addresses, each bound to its
own source address before connect, take 40-100 ms per round trip:

  * 8 TLS clients (tls = terminate) whose every flight waits one round
    trip, and 8 clients sending their preamble in four pieces, from
    addresses outside the flooder's /24, with two workers: every one is
    served (the backend gets the preamble byte-exact, the Ack comes back);
  * 8 split-preamble clients on other addresses of the flooder's own /24
    (sources are counted by IPv4 address, /32): every one is served;
  * a flooder on ::1 and 8 split-preamble IPv4 clients: every one is served.

Each test also checks that the flood did push max_pending (the daemon
evicted many of the flooder's preambles), and that every eviction was one
of the flooder's.
"""

import collections
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nettcpd_test import (SLOW, Backend, Daemon, free_port, preamble,  # noqa: E402
                          recv_exact, run_tests, wait_for)
from test_tls import TLSClient, make_pki, tls_route  # noqa: E402

MAX_PENDING = 20
FLOOD_RATE = 400          # connections a second
FLOOD_HOLD = 600          # the flooder's sockets kept open at once
FLOOD_SECONDS = 30        # the flood's bound, whatever happens
CLIENTS = 8
RTT = (0.040, 0.100)      # a good client's round trip, seconds


class Flooder:
    """Connections from source, each sending one byte and holding, at
    FLOOD_RATE a second until stopped (or FLOOD_SECONDS)."""

    def __init__(self, port, host="127.0.0.1", source="127.0.0.1"):
        self.port, self.host, self.source = port, host, source
        self.opened = self.failed = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _connect(self):
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(2 * SLOW)
        try:
            s.bind((self.source, 0))
            s.connect((self.host, self.port))
            s.sendall(b"\x00")     # or TCP_DEFER_ACCEPT keeps it from the daemon
        except OSError:
            s.close()
            return None
        return s

    def _run(self):
        held = collections.deque()
        started = time.monotonic()
        while not self.stopping.is_set() and time.monotonic() - started < FLOOD_SECONDS:
            s = self._connect()
            if s is None:
                self.failed += 1
            else:
                self.opened += 1
                held.append(s)
                if len(held) > FLOOD_HOLD:
                    held.popleft().close()
            ahead = started + self.opened / FLOOD_RATE - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        for s in held:
            s.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(FLOOD_SECONDS + 10)


class SlowTLSClient(TLSClient):
    """Every flight of the handshake leaves after one round trip."""

    def __init__(self, sock, rtt):
        self.rtt = rtt
        super().__init__(sock)

    def _flush(self):
        data = self.outgoing.read()
        if data:
            time.sleep(self.rtt)
            self.sock.sendall(data)


def client_socket(d, source, host="127.0.0.1"):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(10 * SLOW)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind((source, 0))
    s.connect((host, d.port))
    return s


def split_client(d, source, via, rtt):
    """The preamble in four pieces, one round trip apart: the Ack, or why not."""
    data = preamble(via)
    cuts = [0, 3, 8, len(data) - 1, len(data)]
    s = client_socket(d, source)
    try:
        for i in range(4):
            if i:
                time.sleep(rtt)
            s.sendall(data[cuts[i]:cuts[i + 1]])
        got = recv_exact(s, 2)
        return "served" if got == b"\x0bB" else f"got {got!r}"
    except OSError as e:
        return f"{type(e).__name__}"
    finally:
        s.close()


def tls_client(d, source, via, rtt):
    """Upgrade, a handshake of slow flights, 0C inside TLS, the Ack."""
    s = client_socket(d, source)
    try:
        s.sendall(preamble(via, upgrade="application/ssl-tls"))
        if recv_exact(s, 1) != b"\x0a":
            return "no upgrade response"
        time.sleep(rtt)
        t = SlowTLSClient(s, rtt)
        t.send(b"\x0c")
        ack = b""
        while len(ack) < 2:
            chunk = t.recv(2 - len(ack))
            if not chunk:
                break
            ack += chunk
        return "served" if ack == b"\x0bB" else f"got {ack!r}"
    except (OSError, ValueError) as e:
        return f"{type(e).__name__}"
    finally:
        s.close()


def run_clients(d, clients):
    """Start each (fn, source, via) a little after the one before, each with
    its own round trip; wait for all; their results by source."""
    rnd = random.Random(16)
    results = {}

    def one(fn, source, via, rtt):
        results[source] = fn(d, source, via, rtt)

    threads = []
    for fn, source, via in clients:
        t = threading.Thread(target=one, args=(fn, source, via, rnd.uniform(*RTT)),
                             daemon=True)
        t.start()
        threads.append(t)
        time.sleep(0.2)     # the clients come over seconds of the flood
    for t in threads:
        t.join(60 * SLOW)
    return results


def evictions(d):
    return [line for line in d.log().splitlines() if "max_pending (" in line]


def flood_and_serve(d, b, clients, flood_host="127.0.0.1", flood_source="127.0.0.1"):
    """Flood from one source; once the flood has filled max_pending, run the
    clients; every one must be served, every eviction the flooder's."""
    base = d.sockets()
    with Flooder(d.port, flood_host, flood_source) as flood:
        wait_for(lambda: len(evictions(d)) >= MAX_PENDING, 20,
                 what="the flood to fill max_pending")
        started, before = time.monotonic(), flood.opened
        results = run_clients(d, clients)
        rate = (flood.opened - before) / (time.monotonic() - started)
    evicted = evictions(d)
    print(f"  flood: {flood.opened} connections ({rate:.0f}/s during the clients), "
          f"{flood.failed} failed; {len(evicted)} evictions")
    served = sorted(src for src, r in results.items() if r == "served")
    print(f"  served {len(served)} of {len(clients)}")
    assert len(served) == len(clients), \
        f"not served: { {s: r for s, r in results.items() if r != 'served'} }"
    for _, source, via in clients:
        want = preamble(via)
        assert want in b.received, f"{source}: the backend did not get its preamble byte-exact"
    # the flood pushed max_pending hard, and only the flooder gave way
    assert len(evicted) >= 2 * MAX_PENDING, len(evicted)
    others = [line for line in evicted if f"client {flood_source}:" not in line
              and f"client [{flood_source}]:" not in line]
    assert not others, "\n".join(others[:5])
    d.assert_no_leak(base, timeout=20)


def config(port, b, listen=None, workers=2, tls=True):
    text = (f"[global]\nlisten = {listen or f'127.0.0.1:{port}'}\nlog_level = info\n"
            f"max_pending = {MAX_PENDING}\npreamble_timeout = 30s\nworkers = {workers}\n"
            # every eviction's line, which the tests read
            "log_client_lines = 0\n\n"
            f"[split]\nvia = net.tcp://+/Split\nbackend = {b.addr}\n\n")
    if tls:
        text += tls_route("secure", "net.tcp://+/Secure", b.addr)
    return text


def test_flood_from_one_address_cannot_starve_tls_and_slow_clients():
    b = Backend(name="B")
    port = free_port()
    d = Daemon(raw_config=config(port, b))
    d.port = port
    clients = []
    for i in range(1, CLIENTS + 1):
        clients.append((tls_client, f"127.0.1.{i}", f"net.tcp://localhost/Secure/{i}"))
        clients.append((split_client, f"127.0.2.{i}", f"net.tcp://h/Split/{i}"))
    with d:
        flood_and_serve(d, b, clients)
    b.close()


def test_flood_cannot_starve_other_hosts_of_its_own_slash24():
    b = Backend(name="B")
    port = free_port()
    d = Daemon(raw_config=config(port, b, workers=1, tls=False))
    d.port = port
    clients = [(split_client, f"127.0.0.{i}", f"net.tcp://h/Split/{i}")
               for i in range(2, CLIENTS + 2)]
    with d:
        flood_and_serve(d, b, clients)
    b.close()


def test_ipv6_flood_cannot_starve_ipv4_clients():
    b = Backend(name="B")
    port = free_port()
    d = Daemon(raw_config=config(port, b, listen=f"127.0.0.1:{port}, [::1]:{port}",
                                 tls=False))
    d.port = port
    clients = [(split_client, f"127.0.3.{i}", f"net.tcp://h/Split/{i}")
               for i in range(1, CLIENTS + 1)]
    with d:
        flood_and_serve(d, b, clients, flood_host="::1", flood_source="::1")
    b.close()


if __name__ == "__main__":
    make_pki()
    run_tests(globals())
