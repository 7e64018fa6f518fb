#!/usr/bin/env bash
# Interop test: the real .NET WCF client calls a C# service that takes its client sockets
# from nettcpd by socket handoff (examples/dotnet: the NettcpShare library and HandoffService,
# which speaks the server side of [MC-NMF] itself with WCF's binary session encoder).
#
#   1. HandoffService --listen (its own TCP listener, no nettcpd): the .NET client's calls,
#      a 1 MiB RoundTrip, a second channel on the pooled connection, a Via it does not serve
#      (EndpointNotFound), and a client that breaks off inside a preamble (the service logs it
#      and goes on serving); with --max-connections 1, a second connection waits for the first.
#   2. nettcpd with a control socket; C# service A registers net.tcp://+/Handoff as handoff,
#      C# service B net.tcp://+/Other. One .NET client process opens channels, in turn, to
#      /Handoff (3 calls and a 1 MiB RoundTrip), /Handoff/Deep, /Other and /Handoff. .NET
#      pools its connection per host:port, so each channel after the first sends its preamble
#      on the connection of the channel before, i.e. on a socket nettcpd handed off:
#        /Handoff/Deep arrives at A, whose VALIDATE says yes: served on the same connection;
#        /Other arrives at A, VALIDATE says no: A closes, the client dials again, nettcpd
#          hands the new connection to B;
#        /Handoff arrives at B, VALIDATE no, B closes, the new connection goes to A.
#      Each handed-off connection's first session is parsed from the preamble bytes nettcpd
#      passed: their count must be exactly that preamble's length. Once the client is done,
#      A holds as many sockets as before.
#      Then a channel to the static route /Static (service S, proxied) and one to /Handoff:
#      nettcpd follows the first session on the pooled connection and hands the connection
#      off at the second, with the second's preamble.
#      A binary upgrade (SIGUSR2, then SIGTERM to the old process): A and B keep their
#      control connections and registrations, and go on serving.
#   3. Registrations refused: a third service asks for /Handoff (held by A) and for the
#      static route's prefix: each exits 1 at once with ERR conflict.
#   4. A killed with SIGKILL: its route disappears at once, the client gets EndpointNotFound.
#   5. A reload adds a static route with B's prefix: B is told REVOKED.
#   6. nettcpd stopped: B sees its control connection end and exits.
#
# Run by `make check` with NETTCPD and NETTCPD_SRCDIR set; by hand:
# NETTCPD=$PWD/src/nettcpd bash t/interop_dotnet_handoff.sh. Exit 0 pass, 1 fail, 77 skip
# (no .NET SDK, with a SKIP line). Build outputs go to $NETTCPD_INTEROP_BUILDDIR/handoff
# (default t/interop/build/handoff below the current directory, removed by `make clean`).
set -u
. "$(dirname "$0")/interop/lib.sh"
INTEROP_WHAT="the C# example service"
BUILD=${NETTCPD_INTEROP_BUILDDIR:-t/interop/build}/handoff

if ! command -v dotnet >/dev/null 2>&1; then
    echo "SKIP: interop_dotnet_handoff: .NET SDK absent, the C# handoff example is not tested"
    exit 77
fi
need_nettcpd
if ! command -v python3 >/dev/null 2>&1; then
    echo "SKIP: interop_dotnet_handoff: python3 absent (it picks free ports and plays a broken client)"
    exit 77
fi

interop_dirs nettcpd-handoff

# ---------------------------------------------------------------- build
if ! dotnet_build "$SRCDIR/examples/dotnet/HandoffService/HandoffService.csproj" "$BUILD/service" ||
   ! dotnet_build "$SRCDIR/t/interop/dotnet/InteropClient.csproj" "$BUILD/client"; then
    fail "build of the C# handoff example and the .NET client (dotnet build)"
    finish
fi
SVC=(dotnet "$BUILD/service/HandoffService.dll")
NET=(dotnet "$BUILD/client/InteropClient.dll")

read -r PUB PL PM PS < <(free_ports 4)
if [ -z "${PS:-}" ]; then fail "could not pick free ports"; finish; fi
URL=net.tcp://127.0.0.1:$PUB
LURL=net.tcp://127.0.0.1:$PL
MURL=net.tcp://127.0.0.1:$PM

# ---------------------------------------------------------------- helpers
# The events a service logged for its connection N, without the time and prefix.
conn_log() { # LOGFILE NAME N
    sed -nE "s/^[0-9:.]+ service $2 conn $3 //p" "$1"
}
# True if the service's connection N logged exactly these events, in order.
conn_logged() { # LOGFILE NAME N EVENTS...
    local got want
    got=$(conn_log "$1" "$2" "$3")
    want=$(printf '%s\n' "${@:4}")
    [ "$got" = "$want" ]
}

# ---------------------------------------------------------------- 1. --listen
"${SVC[@]}" --name L --via "$LURL/Listen" --listen "127.0.0.1:$PL" >"$TMP/service-L.log" 2>&1 &
LPID=$!; PIDS+=("$LPID")
if wait_line "$TMP/service-L.log" '^LISTENING ' "$LPID"; then
    run_client listen-calls "${NET[@]}" --address "$LURL/Listen" --expect-name L --calls 3 --size 1048576 \
        --then "$LURL/Listen/Deep" L
    run_client listen-nowhere "${NET[@]}" --address "$LURL/Nowhere" --expect-endpoint-not-found
    # Version, Mode duplex, then a Via record cut short: the service logs the break-off
    python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(bytes([0, 1, 0, 1, 2, 2, 40]) + b"net.tcp://")
s.close()' "$PL"
    run_client listen-after-broken "${NET[@]}" --address "$LURL/Listen" --expect-name L --calls 1
    if grep -qE "^[0-9:.]+ service L conn [0-9]+ error in session 1: FramingException: end of stream after 10 of 40 bytes" "$TMP/service-L.log"; then
        pass "the C# service logged the client that broke off inside its Via, and served the next"
    else
        fail "the C# service did not log the client that broke off inside its Via"
    fi
else
    fail "HandoffService --listen did not start"
fi
# --max-connections 1: a second connection is not served while the first is
"${SVC[@]}" --name M --via "$MURL/M" --listen "127.0.0.1:$PM" --max-connections 1 >"$TMP/service-M.log" 2>&1 &
MPID=$!; PIDS+=("$MPID")
if wait_line "$TMP/service-M.log" '^LISTENING ' "$MPID"; then
    if out=$(python3 -c '
import socket, sys
port = int(sys.argv[1])
via = ("net.tcp://127.0.0.1:%d/M" % port).encode()
preamble = bytes([0, 1, 0, 1, 2, 2, len(via)]) + via + bytes([3, 8, 12])
def dial():
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(preamble)
    return s
def acked(s, wait):
    s.settimeout(wait)
    try:
        return s.recv(1) == bytes([0x0B])
    except socket.timeout:
        return False
a = dial()
if not acked(a, 20): sys.exit("the first connection got no Preamble Ack")
b = dial()
if acked(b, 1): sys.exit("the second connection was acked while the first was served")
a.close()
if not acked(b, 20): sys.exit("the second connection got no Preamble Ack after the first closed")
print("second connection served once the first closed")' "$PM" 2>&1); then
        pass "HandoffService --max-connections 1: $out"
    else
        fail "HandoffService --max-connections 1: $out"
    fi
else
    fail "HandoffService --listen --max-connections 1 did not start"
fi

# ---------------------------------------------------------------- 2. handoff
CTL=$TMP/control.sock
CONF=$TMP/nettcpd.ini
cat >"$CONF" <<EOF
[global]
listen = 127.0.0.1:$PUB
control = $CTL
preamble_timeout = 10s
log_level = debug

; a static route (a registration may not take its prefix) to service S
[static]
via = net.tcp://+/Static
backend = 127.0.0.1:$PS
EOF
start_daemon nettcpd nettcpd "$CONF" "$PUB" "$CTL" || finish
DPID=$STARTED_PID

start_registrant() { # NAME PREFIX : sets STARTED_PID
    "${SVC[@]}" --name "$1" --via "$2" --control "$CTL" >"$TMP/service-$1.log" 2>&1 &
    STARTED_PID=$!; PIDS+=("$STARTED_PID")
}
# S: the static route's service, a WCF-like server on its own listener (End answered,
# the next preamble read), so that nettcpd pools the client's connection after it
"${SVC[@]}" --name S --via "$URL/Static" --listen "127.0.0.1:$PS" >"$TMP/service-S.log" 2>&1 &
SPID=$!; PIDS+=("$SPID")
start_registrant A "net.tcp://+/Handoff"; APID=$STARTED_PID
start_registrant B "net.tcp://+/Other"; BPID=$STARTED_PID
if ! wait_line "$TMP/service-S.log" '^LISTENING ' "$SPID"; then
    fail "C# service S (--listen) did not start"
    finish
fi
if wait_line "$TMP/service-A.log" '^REGISTERED ' "$APID" && wait_line "$TMP/service-B.log" '^REGISTERED ' "$BPID"; then
    pass "C# services A and B registered as handoff: $(sed -n 's/^REGISTERED service A: //p' "$TMP/service-A.log");" \
        "$(sed -n 's/^REGISTERED service B: //p' "$TMP/service-B.log")"
else
    fail "C# services A and B did not both register"
    finish
fi

# The sockets a process holds (the registrants: their control connection, and each client
# connection while they serve it).
sockets() { ls -l "/proc/$1/fd" 2>/dev/null | grep -c 'socket:'; }
A_SOCKETS=$(sockets "$APID")
run_client handoff-channels "${NET[@]}" --address "$URL/Handoff" --expect-name A --calls 3 --size 1048576 \
    --then "$URL/Handoff/Deep" A --then "$URL/Other" B --then "$URL/Handoff" A
# A preamble without an upgrade is Version (3), Mode (2), Via (2 + its length; < 128),
# Known Encoding (2) and Preamble End (1): nettcpd must pass exactly those bytes.
plen() { echo $((10 + ${#1})); }
A1="from 127\.0\.0\.1:[0-9]+ \(handoff [0-9]+, $(plen "$URL/Handoff") preamble bytes\)"
B1="from 127\.0\.0\.1:[0-9]+ \(handoff [0-9]+, $(plen "$URL/Other") preamble bytes\)"
served() { echo "session $1: Via '$2'"; }
answered() { echo "session $1: $2 message(s) answered, End answered"; }
moved() { echo "session $1: Via '$2' no longer routes here: connection closed for the client to dial again"; }
check_conn() { # WHAT LOGFILE NAME N EVENTS... (the first event a regex, the others exact)
    local got first i
    for i in $(seq 1 50); do   # the last event of a connection comes as the client moves on
        got=$(conn_log "$2" "$3" "$4")
        first=$(head -n 1 <<<"$got")
        [[ $first =~ ^$5$ ]] && [ "$(tail -n +2 <<<"$got")" = "$(printf '%s\n' "${@:6}")" ] && { pass "$1"; return; }
        sleep 0.1
    done
    fail "$1: service $3 conn $4 logged:"$'\n'"$got"$'\n'"want:"$'\n'"$5"$'\n'"$(printf '%s\n' "${@:6}")"
}
check_conn "A served /Handoff and, VALIDATE yes, /Handoff/Deep on one handed-off connection, then closed it for /Other (VALIDATE no)" \
    "$TMP/service-A.log" A 1 "$A1" \
    "$(served 1 "$URL/Handoff")" "$(answered 1 4)" \
    "$(served 2 "$URL/Handoff/Deep")" "$(answered 2 1)" \
    "$(moved 3 "$URL/Other")"
check_conn "B served /Other on the connection the client dialled again, then closed it for /Handoff (VALIDATE no)" \
    "$TMP/service-B.log" B 1 "$B1" \
    "$(served 1 "$URL/Other")" "$(answered 1 1)" \
    "$(moved 2 "$URL/Handoff")"
check_conn "A served /Handoff again on a third connection" \
    "$TMP/service-A.log" A 2 "$A1" \
    "$(served 1 "$URL/Handoff")" "$(answered 1 1)" \
    "closed by the client after 1 session(s): Via '$URL/Handoff'"

# A connection that carried a session through nettcpd to a static route is handed off at
# its first session for a handoff registration, with that session's preamble bytes.
run_client handoff-after-static "${NET[@]}" --address "$URL/Static" --expect-name S --then "$URL/Handoff" A
check_conn "nettcpd handed off, with its own preamble, the session for /Handoff that followed one to the static route on the same client connection" \
    "$TMP/service-A.log" A 3 "$A1" \
    "$(served 1 "$URL/Handoff")" "$(answered 1 1)" \
    "closed by the client after 1 session(s): Via '$URL/Handoff'"
# three connections handed off to A and closed: none of their sockets left behind
n=$(sockets "$APID")
if [ "$n" -eq "$A_SOCKETS" ]; then
    pass "A holds $n socket(s) after its handed-off connections closed, as before them"
else
    fail "A holds $n socket(s) after its handed-off connections closed, $A_SOCKETS before them"
fi

# ---------------------------------------------------------------- binary upgrade
# SIGUSR2, then SIGTERM to the old process: the control connections and registrations pass
# to the new process, the registrants notice nothing and go on taking clients.
kill -USR2 "$DPID"
if wait_line "$TMP/nettcpd.log" 'binary upgrade: started .* as pid [0-9]+' "$DPID"; then
    NEWPID=$(sed -nE 's/.*binary upgrade: started .* as pid ([0-9]+).*/\1/p' "$TMP/nettcpd.log" | head -n 1)
    PIDS+=("$NEWPID")
    wait_line "$TMP/nettcpd.log" "nettcpd\[$NEWPID\]: info: nettcpd .* started" "$NEWPID"
    kill -TERM "$DPID"
    if wait_exit "$DPID" && [ "$EXITED" -eq 0 ]; then
        pass "binary upgrade: the old nettcpd exited 0, pid $NEWPID serves"
    else
        fail "binary upgrade: the old nettcpd did not exit 0 within 10 s of SIGTERM"
    fi
    DPID=$NEWPID
    run_client handoff-upgraded "${NET[@]}" --address "$URL/Handoff" --expect-name A --calls 2 --then "$URL/Other" B
    if grep -qs "control connection closed" "$TMP/service-A.log" "$TMP/service-B.log"; then
        fail "binary upgrade: a registrant saw its control connection end"
    else
        pass "binary upgrade: A and B kept their control connections and registrations"
    fi
else
    fail "binary upgrade: nettcpd did not start a new process on SIGUSR2"
fi

# ---------------------------------------------------------------- 3. refusals
for want in "net.tcp://+/Handoff A's" "net.tcp://+/Static the static route's"; do
    prefix=${want%% *}
    start_registrant C "$prefix"; CPID=$STARTED_PID
    if wait_exit "$CPID" && [ "$EXITED" -eq 1 ] && grep -qE '^REFUSED service C: REGISTER refused: ERR [0-9]+ conflict ' "$TMP/service-C.log"; then
        pass "a registration of ${want#* } prefix $prefix refused with ERR conflict, the service exited 1"
    else
        fail "a registration of ${want#* } prefix $prefix: $(head -n 3 "$TMP/service-C.log")"
        kill "$CPID" 2>/dev/null
    fi
done

# ---------------------------------------------------------------- 4. registrant killed
kill -KILL "$APID"; wait "$APID" 2>/dev/null
# nettcpd takes the route away as it sees the control connection end (its log line the sync)
wait_line "$TMP/nettcpd.log" 'unregistered net\.tcp://\+/Handoff ' "$DPID" ||
    fail "nettcpd did not log A's registration ended after kill -9"
run_client handoff-killed "${NET[@]}" --address "$URL/Handoff" --expect-endpoint-not-found

# ---------------------------------------------------------------- 5. reload
# A static route that takes B's exact prefix: the file wins, B is told (REVOKED).
cat >>"$CONF" <<EOF

[other]
via = net.tcp://+/Other
backend = 127.0.0.1:$PS
EOF
kill -HUP "$DPID"
if wait_line "$TMP/service-B.log" '^service B: reg-id [0-9]+ revoked \(conflict\): ' "$BPID"; then
    pass "a reload whose new static route holds B's prefix revoked B's registration, and B was told"
else
    fail "B was not told of its registration revoked by a reload"
fi

# ---------------------------------------------------------------- 6. nettcpd stopped
# (after the upgrade nettcpd is no child of this shell: its last line tells how it ended)
kill -TERM "$DPID"
if wait_exit "$DPID" && grep -qE "nettcpd\[$DPID\]: info: stopped" "$TMP/nettcpd.log"; then
    pass "nettcpd stopped on SIGTERM"
else
    fail "nettcpd did not stop within 10 s of SIGTERM"
fi
if wait_exit "$BPID" && [ "$EXITED" -eq 1 ] && grep -qE '^[0-9:.]+ service B control connection closed: ' "$TMP/service-B.log"; then
    pass "B saw its control connection end with nettcpd and exited 1"
else
    fail "B did not exit 1 after its control connection ended"
fi
finish
