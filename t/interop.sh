#!/usr/bin/env bash
# Interop test: real WCF net.tcp clients talk through nettcpd to real WCF services.
#
#   service A  Mono WCF, endpoint address net.tcp://127.0.0.1:PUB/Calculator, listenUri :PA
#   service B  Mono WCF, endpoint address net.tcp://127.0.0.1:PUB/Echo/Deep, listenUri :PB
#   nettcpd    listens on PUB; /Calculator -> PA, /Echo -> PB, anything else -> EndpointNotFound
#   clients    the .NET WCF client (System.ServiceModel.NetTcp, t/interop/dotnet) and the Mono
#              WCF client (t/interop/mono), each call checked for which service answered.
#
# Run by `make check` with NETTCPD (the daemon binary) and NETTCPD_SRCDIR (the source tree)
# set; by hand: NETTCPD=$PWD/src/nettcpd bash t/interop.sh. Exit 0 pass, 1 fail, 77 skip.
# Needs mono-complete (else SKIP); dotnet is optional (without it the .NET part is skipped
# with a NOTICE). Build outputs go to $NETTCPD_INTEROP_BUILDDIR (default t/interop/build
# below the current directory, removed by `make clean`).
set -u

SRCDIR=${NETTCPD_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
IDIR=$SRCDIR/t/interop
BUILD=${NETTCPD_INTEROP_BUILDDIR:-t/interop/build}
T=20   # seconds: every client's own watchdog and WCF timeouts; `timeout` adds a margin

if ! command -v mono >/dev/null 2>&1 || ! command -v mcs >/dev/null 2>&1; then
    echo "SKIP: interop: mono-complete not installed (apt-get install mono-complete)"
    exit 77
fi
if [ -z "${NETTCPD:-}" ] || [ ! -x "$NETTCPD" ]; then
    echo "FAIL: interop: NETTCPD must name the built nettcpd binary (got '${NETTCPD:-}')"
    echo "interop: 0 passed, 1 failed"
    exit 1
fi

mkdir -p "$BUILD" && BUILD=$(cd "$BUILD" && pwd) || exit 1
TMP=$(mktemp -d "${TMPDIR:-/tmp}/nettcpd-interop.XXXXXX") || exit 1

PIDS=()          # processes started here; stopped by PID on exit
DAEMON_PID=
cleanup() {
    local p
    for p in "${PIDS[@]}" $DAEMON_PID; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}" $DAEMON_PID; do wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

NPASS=0; NFAIL=0
pass() { NPASS=$((NPASS + 1)); echo "PASS $*"; }
fail() { NFAIL=$((NFAIL + 1)); echo "FAIL $*"; }
show_log() { echo "---- $1"; sed 's/^/    /' "$2" 2>/dev/null | tail -n 40; }
finish() {
    if [ "$NFAIL" -gt 0 ]; then
        for f in "$TMP"/*.log; do [ -s "$f" ] && show_log "$(basename "$f")" "$f"; done
    fi
    echo "interop: $NPASS passed, $NFAIL failed"
    [ "$NFAIL" -eq 0 ] && exit 0
    exit 1
}

# ---------------------------------------------------------------- build
MONO_OUT=$BUILD/mono
mkdir -p "$MONO_OUT"
MCS=(mcs -sdk:4.5 -nologo -r:System.ServiceModel -r:System.Runtime.Serialization -r:System.Xml)
if ! "${MCS[@]}" -out:"$MONO_OUT/InteropService.exe" "$IDIR/mono/Contracts.cs" "$IDIR/mono/Service.cs" >"$TMP/build-mono.log" 2>&1 ||
   ! "${MCS[@]}" -out:"$MONO_OUT/InteropClient.exe" "$IDIR/mono/Contracts.cs" "$IDIR/mono/Client.cs" >>"$TMP/build-mono.log" 2>&1; then
    fail "build of the Mono service and client"
    finish
fi

HAVE_DOTNET=no
if command -v dotnet >/dev/null 2>&1; then
    export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
    # --artifacts-path keeps obj/ out of the source tree; no build servers are left running.
    if dotnet build "$IDIR/dotnet/InteropClient.csproj" -c Release -o "$BUILD/dotnet" \
            --artifacts-path "$BUILD/dotnet-artifacts" -nodeReuse:false -p:UseSharedCompilation=false \
            >"$TMP/build-dotnet.log" 2>&1; then
        HAVE_DOTNET=yes
    else
        fail "build of the .NET client (dotnet build; NuGet System.ServiceModel.NetTcp 10.1.0)"
    fi
else
    echo "NOTICE: interop: .NET SDK absent, .NET WCF client part skipped"
fi

# ---------------------------------------------------------------- ports
# Three free loopback ports, bound without SO_REUSEADDR (so none is in TIME-WAIT:
# Mono's listener would refuse it), then released for the services and nettcpd.
free_ports() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))'
    else   # fallback: random ports nobody answers on
        local out=() p
        while [ ${#out[@]} -lt 3 ]; do
            p=$((20000 + RANDOM % 30000))
            (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || out+=("$p")
        done
        echo "${out[@]}"
    fi
}
read -r PUB PA PB < <(free_ports)
if [ -z "${PB:-}" ]; then fail "could not pick free ports"; finish; fi
echo "ports: nettcpd $PUB, service A $PA, service B $PB"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- services
start_service() { # NAME PUBLIC-URI PRIVATE-URI
    local log="$TMP/service-$1.log" i
    mono "$MONO_OUT/InteropService.exe" --name "$1" --address "$2" --listen "$3" >"$log" 2>&1 &
    PIDS+=($!)
    for i in $(seq 1 300); do
        grep -qs '^LISTENING' "$log" && return 0
        kill -0 "${PIDS[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    fail "Mono service $1 did not start"
    return 1
}
start_service A "net.tcp://127.0.0.1:$PUB/Calculator" "net.tcp://127.0.0.1:$PA/Calculator" || finish
start_service B "net.tcp://127.0.0.1:$PUB/Echo/Deep" "net.tcp://127.0.0.1:$PB/Echo/Deep" || finish

# ---------------------------------------------------------------- nettcpd
CONF=$TMP/nettcpd.ini
cat >"$CONF" <<EOF
[global]
listen = 127.0.0.1:$PUB
preamble_timeout = 10s
connect_timeout = 2s

[calculator]
via = net.tcp://+/Calculator
backend = 127.0.0.1:$PA

[echo]
via = net.tcp://+/Echo
backend = 127.0.0.1:$PB
EOF

if "$NETTCPD" -t -c "$CONF" >"$TMP/nettcpd-check.log" 2>&1; then
    pass "nettcpd -t accepts the test config"
else
    fail "nettcpd -t rejects the test config"
fi

"$NETTCPD" -c "$CONF" >"$TMP/nettcpd.log" 2>&1 &
DAEMON_PID=$!
for i in $(seq 1 100); do
    port_open "$PUB" && break
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
done
if ! port_open "$PUB"; then
    fail "nettcpd is not accepting on 127.0.0.1:$PUB"
    finish
fi

# ---------------------------------------------------------------- calls
run_client() { # LOGNAME COMMAND... : one PASS/FAIL line from the client decides
    local out rc
    out=$(timeout -k 5 $((T + 15)) "${@:2}" --timeout "$T" 2>"$TMP/$1.log"); rc=$?
    out=$(printf '%s\n' "$out" | grep -E '^(PASS|FAIL) ' | tail -n 1)
    [ -n "$out" ] || out="FAIL $1: no result line (exit status $rc)"
    if [ "$rc" -eq 0 ] && [[ $out == PASS* ]]; then
        NPASS=$((NPASS + 1)); echo "$out"
    elif [[ $out == FAIL* ]]; then
        NFAIL=$((NFAIL + 1)); echo "$out"
    else
        NFAIL=$((NFAIL + 1)); echo "FAIL $1: exit status $rc after: $out"
    fi
}
URL=net.tcp://127.0.0.1:$PUB

if [ "$HAVE_DOTNET" = yes ]; then
    NET=(dotnet "$BUILD/dotnet/InteropClient.dll")
    run_client dotnet-calculator "${NET[@]}" --address "$URL/Calculator" --expect-name A --calls 2
    run_client dotnet-echo "${NET[@]}" --address "$URL/Echo/Deep" --expect-name B --calls 5 --size 1048576
    run_client dotnet-nowhere "${NET[@]}" --address "$URL/Nowhere" --expect-endpoint-not-found
fi
MC=(mono "$MONO_OUT/InteropClient.exe")
run_client mono-calculator "${MC[@]}" --address "$URL/Calculator" --expect-name A --calls 2
run_client mono-echo "${MC[@]}" --address "$URL/Echo/Deep" --expect-name B --calls 3 --size 1048576
run_client mono-nowhere "${MC[@]}" --address "$URL/Nowhere" --expect-endpoint-not-found

# ---------------------------------------------------------------- shutdown
kill -TERM "$DAEMON_PID" 2>/dev/null
for i in $(seq 1 100); do
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$DAEMON_PID" 2>/dev/null; then
    fail "nettcpd still running 10 s after SIGTERM"
    kill -KILL "$DAEMON_PID" 2>/dev/null
    wait "$DAEMON_PID" 2>/dev/null
else
    wait "$DAEMON_PID"; rc=$?
    if [ "$rc" -eq 0 ]; then pass "nettcpd exited 0 on SIGTERM"; else fail "nettcpd exited $rc on SIGTERM"; fi
fi
DAEMON_PID=
finish
