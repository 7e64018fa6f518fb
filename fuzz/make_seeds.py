#!/usr/bin/env python3
"""Write the seed corpus: fuzz/corpus/{nmf,flow,via,config}/ and the fixed
regression inputs of fuzz/regress/nmf/.

The seeds are sources, kept in git; this script only says where they came
from and makes adding one easy.  It rewrites the files it knows and leaves
every other file (inputs saved from fuzzing runs) alone:

    python3 fuzz/make_seeds.py
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# the framing builders the integration tests use
sys.path.insert(0, os.path.join(HERE, "..", "t"))
from nettcpd_test import (fault_record, mbint, sized_envelope,  # noqa: E402
                          string_record)


def preamble(via, mode=2, encoding=8, content_type=None, upgrade=None,
             version=(1, 0), end=True):
    out = bytes([0, version[0], version[1], 1, mode]) + string_record(2, via)
    if content_type is not None:
        out += string_record(4, content_type)
    elif encoding is not None:
        out += bytes([3, encoding])
    if upgrade is not None:
        return out + string_record(9, upgrade)
    return out + (b"\x0c" if end else b"")


def write(kind, name, data, sub="corpus"):
    d = os.path.join(HERE, sub, kind)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ------------------------------------------------------------ nmf
# The first byte is the harness's control byte (see fuzz_nmf.c): 0x00 =
# no split bytes, start at the first byte of a connection.

def nmf(name, stream, control=0, splits=b""):
    assert len(splits) == control & 0x0F
    write("nmf", name, bytes([control]) + splits + stream)


VIA = "net.tcp://127.0.0.1:37221/Echo"
nmf("mode1-singleton-unsized", preamble(VIA, mode=1))
nmf("mode2-duplex", preamble(VIA, mode=2))
nmf("mode3-simplex", preamble(VIA, mode=3))
nmf("mode4-singleton-sized", preamble(VIA, mode=4))
nmf("mode0-invalid", preamble(VIA, mode=0))
for enc in range(0, 10):
    nmf(f"known-encoding-{enc}", preamble(VIA, encoding=enc))
nmf("upgrade-ssl-tls", preamble("net.tcp://h/Secure", upgrade="application/ssl-tls"))
nmf("upgrade-negotiate", preamble("net.tcp://h/Secure", upgrade="application/negotiate"))
nmf("upgrade-then-tls-bytes", preamble("net.tcp://h/S", upgrade="application/ssl-tls") +
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
nmf("extensible-msbinsession1-gzip",
    preamble("net.tcp://h/x", content_type="application/soap+msbinsession1+gzip"))
nmf("extensible-text-xml",
    preamble("net.tcp://h/x", content_type="text/xml; charset=utf-8"))
nmf("extensible-256", preamble("net.tcp://h/x", content_type="a" * 256))
nmf("extensible-257", preamble("net.tcp://h/x", content_type="a" * 257))
nmf("upgrade-256", preamble("net.tcp://h/x", upgrade="u" * 256))
nmf("upgrade-257", preamble("net.tcp://h/x", upgrade="u" * 257))
long_via = "net.tcp://host.example/" + "/".join(["seg%03d" % i for i in range(400)])
nmf("via-2048", preamble(long_via[:2048]))
nmf("via-2049", preamble(long_via[:2048] + "x"))
nmf("via-mbint-non-minimal", bytes([0, 1, 0, 1, 2, 2, 0x9e, 0x80, 0x00]) +
    VIA.encode() + b"\x03\x08\x0c")
nmf("via-empty", preamble(""))
nmf("version-2-0", preamble(VIA, version=(2, 0)))
nmf("version-1-1", preamble(VIA, version=(1, 1)))
nmf("mono-capture-with-envelope", preamble(VIA) + b"\x06\xcf\x01\x05\x04")
nmf("no-preamble-end", preamble(VIA, end=False))
nmf("garbage-http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
nmf("split-1-0-7", preamble("net.tcp://h/split/me"), control=0x03, splits=bytes([1, 0, 7]))
nmf("split-3", preamble("net.tcp://h/x", upgrade="application/ssl-tls"),
    control=0x01, splits=bytes([3]))
nmf("upgraded-start-tls-again", string_record(9, "application/ssl-tls"), control=0x30)
nmf("upgraded-start-end", b"\x0c", control=0x10)
nmf("upgraded-start-via", string_record(2, VIA), control=0x30)

# Hostile sizes: the parser refuses each on its size byte.  Kept as
# regressions too, so that make check replays them on every build.
HEAD = bytes([0, 1, 0, 1, 2])
VIA_REC = string_record(2, "net.tcp://h/x")
HOSTILE = {
    "via": HEAD + b"\x02",
    "content-type": HEAD + VIA_REC + b"\x04",
    "upgrade": HEAD + VIA_REC + b"\x03\x08\x09",
}
for what, head in HOSTILE.items():
    for label, size in (("2gib", b"\x80\x80\x80\x80\x08"),
                        ("2gib-minus-1", b"\xff\xff\xff\xff\x07"),
                        ("6-byte-mbint", b"\x80\x80\x80\x80\x80\x00"),
                        ("2049", mbint(2049))):
        for sub in ("corpus", "regress"):
            write("nmf", f"size-{label}-{what}", b"\x00" + head + size + b"x" * 16, sub)

# ------------------------------------------------------------ flow
# The first byte is the harness's control byte (see fuzz_flow.c): bits 0-3
# the number of split bytes, 0x10 = the down direction (service to client,
# from its first byte); without it the up direction, from just after the
# client's Preamble End.

def flow(name, stream, down=False, splits=b""):
    assert len(splits) <= 0x0F
    write("flow", name, bytes([(0x10 if down else 0) | len(splits)]) +
          splits + stream)


# What a binary-encoded SOAP message looks like on the wire: not parsed by
# the follower, but full of bytes that are record types elsewhere.
MSG = (b"\x56\x02\x0b\x01\x73\x04\x0b\x01\x61\x06\x56\x08\x44\x0a\x1e\x00"
       b"\x82\x99\x0furn:Echo/Invoke\x44\x0c\x1e\x00\x82\xab\x01\x01\x56\x0e"
       b"\x40\x04Echo\x08\x07\x06\x0c\x01\x01\x01")
NEXT_PREAMBLE = preamble(VIA)
ACK = b"\x0b"
END = b"\x07"

flow("up-envelopes-end-next-preamble",
     sized_envelope(MSG) + sized_envelope(b"") + sized_envelope(MSG[:7]) +
     END + NEXT_PREAMBLE)
flow("up-end-only", END)
flow("up-empty", b"")
flow("down-ack-envelopes-end", ACK + sized_envelope(MSG) + sized_envelope(MSG) +
     END + b"junk", down=True)
flow("down-ack-only", ACK, down=True)
flow("down-empty", b"", down=True)
flow("down-fault-instead-of-ack", fault_record("EndpointNotFound"), down=True)
flow("down-ack-then-fault", ACK + sized_envelope(MSG) +
     fault_record("ServerTooBusy"), down=True)
flow("down-end-without-ack", END, down=True)
flow("up-ack-is-not-up", ACK + END)
flow("up-unsized-envelope", b"\x05" + MSG + b"\x00" + END)
flow("down-http-text", b"HTTP/1.1 400 Bad Request\r\n\r\n", down=True)
flow("up-end-bytes-as-payload", sized_envelope(END * 3) + END + END)
# sizes of every length, the largest ones cut short inside the payload
flow("up-size-127", sized_envelope(END * 127) + END)
flow("up-size-128", sized_envelope(END * 128) + END)
flow("up-size-300-skip", sized_envelope(bytes(range(256)) + MSG[:44]) + END,
     splits=bytes([1, 2, 200, 0, 255]))
flow("up-size-3-byte-cut", b"\x06" + mbint(16384) + MSG)
flow("up-size-2gib-minus-1-cut", b"\x06\xff\xff\xff\xff\x07" + MSG)
flow("up-size-2gib", b"\x06\x80\x80\x80\x80\x08" + END)
flow("up-size-6-byte-mbint", b"\x06\x80\x80\x80\x80\x80\x00" + END)
flow("up-size-non-minimal", b"\x06\x81\x80\x00x\x06\x80\x00" + END)
flow("up-size-cut", b"\x06\x80\x80")
# split markers: chunk sizes, an empty call, and skips of the payload
flow("split-1-0-7", sized_envelope(MSG) + END + NEXT_PREAMBLE,
     splits=bytes([1, 0, 7]))
flow("split-0-0-3", ACK + sized_envelope(MSG) + sized_envelope(MSG) + END,
     down=True, splits=bytes([0, 0, 3]))
flow("split-every-1", ACK + sized_envelope(MSG) + END + ACK, down=True,
     splits=bytes([1]))

# ------------------------------------------------------------ via

VIAS = {
    "plain": "net.tcp://host.example/Svc",
    "strong": "net.tcp://+/Calc/Sub",
    "weak": "net.tcp://*/Weak/Path%20With%20Space",
    "upper-port-query": "NET.TCP://Host.Example:808/Calc/Sub/x?q=1#frag",
    "ipv6": "net.tcp://[::1]:808/V6/deeper",
    "ipv6-long": "net.tcp://[0:0:0:0:0:ffff:7f00:1]/x",
    "ipv6-zone": "net.tcp://[fe80::1%25eth0]/x",
    "ipv4": "net.tcp://10.0.0.1:9000/A/B/C",
    "dots": "net.tcp://h/a/./b/../c",
    "empty-segments": "net.tcp://h/a//..//b",
    "escapes": "net.tcp://h/%41%2f%5C%2E%2e/x%3a%7e%25",
    "lone-percent": "net.tcp://h/100%/x%4",
    "backslashes": "net.tcp:\\\\h\\a\\b",
    "userinfo": "net.tcp://user@h/",
    "space": "net.tcp://h/Path With Space",
    "idn": "net.tcp://xn--bcher-kva.example/%E4%B8%AD",
    "utf8": "net.tcp://b\u00fccher.example/\u4e2d\u6587",
    "lws": "  \tnet.tcp://h/x \r\n",
    "port-0": "net.tcp://h:0/",
    "port-65536": "net.tcp://h:65536/",
    "port-empty": "net.tcp://h:/",
    "http": "http://h/",
    "relative": "/Calc",
    "root": "net.tcp://host.example",
    "root-slash": "net.tcp://host.example/",
    "dotdot-above-root": "net.tcp://h/../../x",
    "deep-route": "net.tcp://h/Calc/Sub/Deep/Deeper/Deepest",
    "exact-ported": "net.tcp://host.example:9000/svc/x/y/z",
    "many-segments": "net.tcp://h" + "/a" * 600,
    "long-2048": ("net.tcp://h/" + "abcdefg/" * 300)[:2048],
    "long-escapes": ("net.tcp://h/" + "%C3%A9" * 400)[:2048],
}
for name, uri in VIAS.items():
    write("via", name, uri)

# ------------------------------------------------------------ config

with open(os.path.join(HERE, "..", "etc", "nettcpd.ini"), "rb") as f:
    write("config", "shipped-example", f.read())

CONFIGS = {
    "minimal": "[global]\nlisten = 127.0.0.1:8808\n\n[a]\nvia = net.tcp://+/A\nbackend = 127.0.0.1:9001\n",
    "every-key": """[global]
listen = 0.0.0.0:808, [::]:808 , 127.0.0.1:8808
preamble_timeout = 1.5
connect_timeout = 500ms
max_connections = 1000000
max_pending = 1
forward = copy
log = syslog
log_level = debug

[calc]
via = net.tcp://+/Calc
via = net.tcp://host.example:808/Calc/Sub
via = net.tcp://*/Weak
backend = [::1]:9001

[local]
backend = localhost:9002
via = net.tcp://[::1]/V6
""",
    "errors": """key = before any section
[global]
listen = 1.2.3.4
listen = [::1:80, host:80
preamble_timeout = 25h
connect_timeout = -1
max_connections = 0
max_pending = 1000001
forward = zero-copy
log = file
log_level = loud
log_level = info
bogus = 1
[global]
[]
[dup]
via = net.tcp://+/X
backend = 127.0.0.1:1
[dup]
via = net.tcp://+/X
via = http://nope/
backend = nosuchhost.invalid:1
backend = 127.0.0.1:2
other = 1
[empty]
[unclosed
no equals sign here
""",
    "bom-crlf-indent": "\ufeff[global]\r\n   listen = 127.0.0.1:1\r\n\t[r] ; comment\r\n  via = net.tcp://+/r\r\n  backend = 127.0.0.1:2\r\n",
    "comments": "; c\n# c\n[global] ; trailing\nlisten = 127.0.0.1:1 ; c\n[r]\nvia=net.tcp://+/r;not a comment\nbackend=127.0.0.1:2\n",
    "long-line": "[global]\nlisten = " + "1" * 5000 + "\n",
    "long-section": "[" + "s" * 400 + "]\nvia = net.tcp://+/s\nbackend = 127.0.0.1:1\n",
    "continuation": "[r]\nvia = net.tcp://+/r\n  more\nbackend = 127.0.0.1:1\n",
    "nul-byte": "[global]\nlisten = 127.0.0.1:1\x00junk\n",
    "no-newline": "[r]\nvia = net.tcp://+/r\nbackend = 127.0.0.1:1",
    "workers-idle": "[global]\nworkers = auto\nidle_timeout = off\n[global]\nworkers = 0\n"
                    "idle_timeout = 5m\n[g2]\nworkers = 2\n",
    "tls-terminate-missing-files": """[secure]
via = net.tcp://+/Secure
backend = 127.0.0.1:9003
tls = terminate
tls_cert = no/such/cert.pem
tls_key = no/such/key.pem
tls_min_version = 1.3
tls_ciphers = ECDHE-RSA-AES128-GCM-SHA256
tls_ciphersuites = TLS_AES_128_GCM_SHA256

[passthrough]
via = net.tcp://+/Pass
backend = 127.0.0.1:9004
tls = passthrough
tls_cert = c.pem
tls_min_version = 1.1
""",
}
for name, text in CONFIGS.items():
    write("config", name, text)


# ------------------------------------------------ sessions (fuzz_sessions.c)
# settings byte, then operations: 0x00|c<<4 N BYTES sends N bytes from
# client c, 0x04 runs the loop, 0x05|(s|b<<1)<<4 sets service s's next
# behaviour b, 0x06 sends the delayed strays, 0x02/0x03 FIN/close.
def send(data, client=0):
    out = b""
    for i in range(0, len(data), 255):
        piece = data[i:i + 255]
        out += bytes([client << 4, len(piece)]) + piece
    return out


RUN = b"\x04"


def behave(service, how):
    return bytes([0x05 | ((service | how << 1) << 4)])


def duplex(via, payloads=(b"hi",)):
    return preamble(via) + b"".join(sized_envelope(p) for p in payloads) + b"\x07"


SINGLETON = preamble("net.tcp://h/A", mode=1) + b"\x05" + mbint(3) + b"abc\x00\x07"
SESSIONS = {
    "one-session": send(duplex("net.tcp://h/A")) + RUN,
    "two-vias-one-connection": send(duplex("net.tcp://h/A")) + RUN +
    send(duplex("net.tcp://h/B")) + RUN + send(duplex("net.tcp://h/B/A/x")) + RUN,
    "pipelined-in-one-write": send(duplex("net.tcp://h/A") + duplex("net.tcp://h/B") +
                                   duplex("net.tcp://h/Admin")) + RUN,
    "singleton-then-duplex": send(SINGLETON) + RUN + send(duplex("net.tcp://h/B")) + RUN,
    "two-clients-share-the-pool": send(duplex("net.tcp://h/A")) + RUN +
    send(duplex("net.tcp://h/A"), client=1) + RUN + send(duplex("net.tcp://h/B"), client=1) + RUN,
    "stray-after-end": behave(0, 2) + send(duplex("net.tcp://h/A")) + RUN +
    send(duplex("net.tcp://h/A"), client=1) + RUN,
    "stray-while-pooled": behave(0, 4) + send(duplex("net.tcp://h/A")) + RUN + b"\x06" +
    send(duplex("net.tcp://h/A"), client=1) + RUN,
    "stray-ack-after-end": behave(0, 6) + send(duplex("net.tcp://h/A")) + RUN +
    send(duplex("net.tcp://h/A"), client=1) + RUN,
    "stray-ack-while-pooled": behave(0, 7) + send(duplex("net.tcp://h/A")) + RUN +
    send(preamble("net.tcp://h/A"), client=1) + RUN + b"\x06" + RUN +
    send(sized_envelope(b"hi") + b"\x07", client=1) + RUN,
    "fault-instead-of-ack": behave(1, 1) + send(duplex("net.tcp://h/B") +
                                                 duplex("net.tcp://h/A")) + RUN,
    "service-closes-after-end": behave(0, 3) + send(duplex("net.tcp://h/A") +
                                                     duplex("net.tcp://h/A")) + RUN,
    "service-ends-first": behave(1, 5) + send(duplex("net.tcp://h/B", [b"x", b"y"])) + RUN +
    send(duplex("net.tcp://h/A")) + RUN,
    "record-out-of-place": send(preamble("net.tcp://h/A") + sized_envelope(b"ok") + b"\x0c" +
                                duplex("net.tcp://h/B")) + RUN,
    "upgrade-passed-through": send(preamble("net.tcp://h/B", upgrade="application/negotiate") +
                                   b"\x16\x03\x01anything" + duplex("net.tcp://h/A")) + RUN,
    "split-byte-by-byte": b"".join(bytes([0x00, 1, x]) + RUN
                                   for x in duplex("net.tcp://h/A") + duplex("net.tcp://h/B")),
    "fin-after-end": send(duplex("net.tcp://h/A")) + b"\x02" + RUN,
    "copy-mode": b"\x01" + send(duplex("net.tcp://h/A", [b"x" * 40000]) +
                                duplex("net.tcp://h/B")) + RUN,
}
for name, ops in SESSIONS.items():
    data = ops if name == "copy-mode" else b"\x00" + ops
    write("sessions", name, data)

# ------------------------------------------------ proxy (fuzz_proxy.c)
# Control byte as for nmf (low nibble: split bytes that follow), then a
# header and the first bytes of a preamble after it.
V2 = b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A"
AFTER = preamble(VIA)[:8]


def proxy(name, stream, splits=b""):
    write("proxy", name, bytes([len(splits)]) + splits + stream + AFTER)


proxy("v1-tcp4", b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 808\r\n")
proxy("v1-tcp6", b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n", splits=b"\x07\x00\x01")
proxy("v1-unknown", b"PROXY UNKNOWN\r\n")
proxy("v1-longest", b"PROXY UNKNOWN " + b":".join([b"ffff"] * 8) + b" " +
      b":".join([b"ffff"] * 8) + b" 65535 65535\r\n")
proxy("v1-too-long", b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n")
proxy("v1-bad-port", b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n")
proxy("v2-tcp4", V2 + b"\x21\x11\x00\x0C\xC0\x00\x02\x01\xC6\x33\x64\x02\xDC\x04\x03\x28",
      splits=b"\x0c\x01\x03")
proxy("v2-tcp6", V2 + b"\x21\x21\x00\x24" + bytes(15) + b"\x01" + bytes(15) + b"\x01" +
      b"\x00\x01\xff\xff")
proxy("v2-tlvs", V2 + b"\x21\x11\x00\x1B\x0A\x00\x00\x05\x0A\x00\x00\x06\x00\x50\x01\xBB" +
      b"\x04\x00\x00\xEA\x00\x09vpce-0123")
proxy("v2-local", V2 + b"\x20\x00\x00\x00")
proxy("v2-unix", V2 + b"\x21\x31\x00\xD8" + bytes(216))
proxy("v2-length-max", V2 + b"\x20\x00\x04\x00" + bytes(1024))
proxy("v2-length-over", V2 + b"\x20\x00\x04\x01" + bytes(1025))
proxy("no-header", b"")

# ------------------------------------------------ ctlproto (fuzz_ctlproto.c)
# Control byte: 0 a client's message, 1 the daemon's; then the message.


def ctl(name, side, msg):
    write("ctlproto", name, bytes([side]) + msg)


ctl("hello", 0, b"HELLO 1 1")
ctl("register-proxy", 0, b"REGISTER 2 net.tcp://+/svc/ proxy 127.0.0.1:9000")
ctl("register-unix", 0, b"REGISTER 3 net.tcp://h:808/a proxy unix:/run/s.sock")
ctl("register-handoff", 0, b"REGISTER 4 net.tcp://*/b handoff")
ctl("unregister", 0, b"UNREGISTER 5 9223372036854775807")
ctl("validate", 0, b"VALIDATE 6 12 net.tcp://h/b/c")
ctl("taken", 0, b"TAKEN 77")
ctl("list", 0, b"LIST 8")
ctl("stats", 0, b"STATS 4294967295")
ctl("doubled-space", 0, b"HELLO  1 1")
ctl("too-long", 0, b"REGISTER 1 net.tcp://h/" + b"a" * 4100 + b" handoff")
ctl("ok-hello", 1, b"OK 1 1 nettcpd/1.0")
ctl("ok-value", 1, b"OK 2 17")
ctl("ok-yes", 1, b"OK 3 yes")
ctl("ok-plain", 1, b"OK 4")
ctl("route-static", 1, b"ROUTE 7 static calc net.tcp://+/calc/ 10.0.0.1:1,10.0.0.2:2 - - 3")
ctl("route-handoff", 1, b"ROUTE 7 handoff reg:5 net.tcp://+/h/ handoff 1000 4242 0")
ctl("stat", 1, b"STAT 8 registrations 2")
ctl("err", 1, b"ERR 0 denied uid 1000 is not allowed")
ctl("revoked", 1, b"REVOKED 3 conflict static route calc took the prefix")
ctl("handoff", 1, b"HANDOFF 5 3 22\n" + preamble("net.tcp://h/a")[:22])
ctl("handoff-short", 1, b"HANDOFF 5 3 40\n" + preamble("net.tcp://h/a")[:22])
