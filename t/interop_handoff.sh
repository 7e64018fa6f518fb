#!/usr/bin/env bash
# Interop test of the example C service (examples/c, nettcp-whoami) with the real
# .NET WCF client (t/interop/dotnet, System.ServiceModel.NetTcp, NetTcpBinding without
# security), three ways:
#
#   direct   service D, nettcp-whoami --listen 127.0.0.1:PD; the client dials it
#   proxy    nettcpd on PUB, static route [proxied] /Proxied -> PD; and a registered proxy
#            route: nettcpctl register --via net.tcp://+/Registered --backend PR around
#            service R (nettcp-whoami --listen PR), as a unit would start a service
#   handoff  service H, nettcp-whoami --control SOCK --via net.tcp://+/Handoff: it
#            registers the prefix with nettcpd's control socket and serves each client
#            socket nettcpd hands it, from the preamble bytes nettcpd read
#
# Each way: three Hello calls and a RoundTrip of 100 KB on one channel, then a second
# channel on the connection the client pooled (.NET pools per host:port: the second
# channel's preamble comes on the same socket after End both ways); the service's log
# must show that second session on the first session's connection.  On the handed-off
# connection the service asks nettcpd (VALIDATE) whether the second Via still routes to
# it: /Handoff/Two does, and is served there; /Proxied does not, so the service closes
# the connection and the client dials again and reaches D through nettcpd's proxy.
# Directly and handed off, also two Hello calls with a 35,000-character text (which
# WCF sends as UTF-16: shorter so than UTF-8).
# A reload and a binary upgrade keep the registration; the registrant killed, a new
# client gets EndpointNotFound; a reload whose file takes a registered prefix revokes it.
#
# Run by `make check` with NETTCPD and NETTCPD_SRCDIR set; nettcp-whoami is found
# beside the daemon's build (NETTCPD_WHOAMI overrides).  Exit 0 pass, 1 fail, 77 skip
# (no .NET SDK).  Build outputs go to $NETTCPD_INTEROP_BUILDDIR (default
# t/interop/build below the current directory, removed by `make clean`).
set -u
. "$(dirname "$0")/interop/lib.sh"
INTEROP_WHAT="the C example service"
BUILD=${NETTCPD_INTEROP_BUILDDIR:-t/interop/build}
BULK=100000
TEXT=35000   # Hello's text: 35,000 euro signs, 105 KB as UTF-8, sent as 70 KB of UTF-16

if ! command -v dotnet >/dev/null 2>&1; then
    echo "SKIP: interop_handoff: .NET SDK absent, the C example service is not tested with the .NET WCF client"
    exit 77
fi
need_nettcpd
WHOAMI=${NETTCPD_WHOAMI:-$(dirname "$NETTCPD")/../examples/c/nettcp-whoami}
NETTCPCTL=$(dirname "$NETTCPD")/nettcpctl
for p in "$WHOAMI" "$NETTCPCTL"; do
    if [ ! -x "$p" ]; then
        echo "FAIL: interop_handoff: no $p (make builds it)"
        exit 1
    fi
done

interop_dirs nettcpd-interop-handoff

# ---------------------------------------------------------------- build
# An output directory of its own: t/interop.sh may build the same client at the same time.
CLIENT=(dotnet "$BUILD/dotnet-handoff/InteropClient.dll")
if ! dotnet_build "$IDIR/dotnet/InteropClient.csproj" "$BUILD/dotnet-handoff"; then
    fail "build of the .NET client (dotnet build; NuGet System.ServiceModel.NetTcp 10.1.0)"
    finish
fi

read -r PUB PD PR < <(free_ports 3)
[ -n "${PR:-}" ] || { fail "could not pick free ports"; finish; }
URL=net.tcp://127.0.0.1:$PUB

client() { # NAME ARGS... : the .NET client, its one PASS/FAIL line decides
    run_client "client-$1" "${CLIENT[@]}" "${@:2}"
}

# Did SERVICE's log show a session for VIA as session N of a connection (fd F
# session N: session for: VIA), on the same fd as its session 1 for FIRST?
same_connection() { # LOG FIRST-VIA N VIA
    local fd
    fd=$(sed -nE "s|.*: fd ([0-9]+) session 1: session for: $2\$|\1|p" "$1" | tail -n 1)
    [ -n "$fd" ] && grep -q ": fd $fd session $3: session for: $4\$" "$1"
}

# ---------------------------------------------------------------- direct
"$WHOAMI" --verbose --name D --listen "127.0.0.1:$PD" >"$TMP/service-D.out" 2>"$TMP/service-D.log" &
PIDS+=($!); D_PID=$!
wait_line "$TMP/service-D.out" '^LISTENING' "$D_PID" "service D did not start" || finish

client direct --address "net.tcp://127.0.0.1:$PD/Direct" --expect-name D --calls 3 --size "$BULK" \
    --then "net.tcp://127.0.0.1:$PD/Direct/Two" D
if same_connection "$TMP/service-D.log" "net.tcp://127.0.0.1:$PD/Direct" 2 "net.tcp://127.0.0.1:$PD/Direct/Two"; then
    pass "direct: the second channel's session came on the first one's connection"
else
    fail "direct: no second session on the first connection in D's log"
fi
client direct-text --address "net.tcp://127.0.0.1:$PD/Direct" --expect-name D --calls 2 --text-size "$TEXT"

# ---------------------------------------------------------------- nettcpd
CONF=$TMP/nettcpd.ini
cat >"$CONF" <<EOF
[global]
listen = 127.0.0.1:$PUB
control = $TMP/control.sock
preamble_timeout = 10s
connect_timeout = 2s
log_level = debug

[proxied]
via = net.tcp://+/Proxied
backend = 127.0.0.1:$PD
EOF
start_daemon nettcpd nettcpd "$CONF" "$PUB" "$TMP/control.sock" || finish
DAEMON_PID=$STARTED_PID

client proxy --address "$URL/Proxied" --expect-name D --calls 3 --size "$BULK" \
    --then "$URL/Proxied/Two" D

"$NETTCPCTL" -s "$TMP/control.sock" register --via "net.tcp://+/Registered" --backend "127.0.0.1:$PR" -- \
    "$WHOAMI" --name R --listen "127.0.0.1:$PR" >"$TMP/service-R.out" 2>"$TMP/service-R.log" &
PIDS+=($!); R_PID=$!
if wait_line "$TMP/service-R.out" '^LISTENING' "$R_PID" "nettcpctl register did not start service R"; then
    client registered --address "$URL/Registered" --expect-name R --calls 3 --size "$BULK"
fi

# ---------------------------------------------------------------- handoff
"$WHOAMI" --verbose --name H --control "$TMP/control.sock" --via "net.tcp://+/Handoff" \
    >"$TMP/service-H.out" 2>"$TMP/service-H.log" &
PIDS+=($!); H_PID=$!
wait_line "$TMP/service-H.out" '^LISTENING' "$H_PID" "service H did not register" || finish

client handoff --address "$URL/Handoff" --expect-name H --calls 3 --size "$BULK" \
    --then "$URL/Handoff/Two" H --then "$URL/Proxied" D
if same_connection "$TMP/service-H.log" "$URL/Handoff" 2 "$URL/Handoff/Two"; then
    pass "handoff: the second channel's session came on the handed-off connection (VALIDATE yes)"
else
    fail "handoff: no second session on the handed-off connection in H's log"
fi
if grep -q "session 3: no longer routed here, closing: $URL/Proxied\$" "$TMP/service-H.log"; then
    pass "handoff: the third channel's Via (a static route) made H close the connection (VALIDATE no)"
else
    fail "handoff: H did not close the connection on the third channel's Via"
fi
client handoff-text --address "$URL/Handoff" --expect-name H --calls 2 --text-size "$TEXT"

# A reload keeps the registration.
kill -HUP "$DAEMON_PID"
wait_line "$TMP/nettcpd.log" 'SIGHUP received: reloaded' "$DAEMON_PID" "nettcpd did not log the reload" &&
    client after-reload --address "$URL/Handoff" --expect-name H --calls 2

# A binary upgrade passes the control connection and the registration to the new
# process: H notices nothing and goes on taking clients from it.
kill -USR2 "$DAEMON_PID"
if wait_line "$TMP/nettcpd.log" 'binary upgrade: took over' "$DAEMON_PID" "no binary upgrade in nettcpd's log"; then
    NEW_PID=$(sed -nE 's/.*binary upgrade: started .* as pid ([0-9]+).*/\1/p' "$TMP/nettcpd.log" | tail -n 1)
    kill "$DAEMON_PID"; wait "$DAEMON_PID" 2>/dev/null
    if [ -n "$NEW_PID" ] && kill -0 "$NEW_PID" 2>/dev/null; then
        PIDS+=("$NEW_PID"); DAEMON_PID=$NEW_PID
        client after-upgrade --address "$URL/Handoff" --expect-name H --calls 2
    else
        fail "binary upgrade: no new nettcpd process"
        finish
    fi
fi

# The registration ends with the registrant.
kill -9 "$H_PID"; wait "$H_PID" 2>/dev/null
client gone --address "$URL/Handoff" --expect-endpoint-not-found

# A reload whose file now holds a registered prefix revokes the registration: the
# file wins, the registrant is told (nettcp-whoami then exits with status 1), and
# new clients of the prefix go to the static route.
"$WHOAMI" --name V --control "$TMP/control.sock" --via "net.tcp://+/Revoked" \
    >"$TMP/service-V.out" 2>"$TMP/service-V.log" &
PIDS+=($!); V_PID=$!
if wait_line "$TMP/service-V.out" '^LISTENING' "$V_PID" "service V did not register"; then
    client before-revoke --address "$URL/Revoked" --expect-name V
    printf '\n[revoked]\nvia = net.tcp://+/Revoked\nbackend = 127.0.0.1:%s\n' "$PD" >>"$CONF"
    kill -HUP "$DAEMON_PID"
    rc="still running"
    wait_exit "$V_PID" && rc=$EXITED
    if [ "$rc" = 1 ] && grep -q "revoked registration" "$TMP/service-V.log"; then
        pass "revoke: a reloaded static route took V's prefix, V was told and exited with status 1"
    else
        fail "revoke: V exit status $rc (want 1 after a REVOKED)"
    fi
    client after-revoke --address "$URL/Revoked" --expect-name D
fi

finish
