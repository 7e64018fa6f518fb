#!/usr/bin/env bash
# Interop test: real WCF net.tcp clients talk through nettcpd to real WCF services.
#
#   service A  Mono WCF, endpoint address net.tcp://127.0.0.1:PUB/Calculator, listenUri :PA
#   service B  Mono WCF, endpoint address net.tcp://127.0.0.1:PUB/Echo/Deep, listenUri :PB
#   service C  Mono WCF, endpoint address net.tcp://localhost:PUB/Secure, listenUri :PC
#   service D  Mono WCF, endpoint address net.tcp://localhost:PUB/Relayed, listenUri :PD
#   nettcpd    listens on PUB; /Calculator -> PA, /Echo -> PB, anything else -> EndpointNotFound;
#              /Secure -> PC with tls = terminate (nettcpd runs the TLS upgrade itself);
#              /Relayed -> P2 with tls = passthrough (the upgrade goes to the backend untouched)
#   nettcpd #2 listens on P2, the TLS-terminating backend of /Relayed: /Relayed -> PD, tls = terminate
#   clients    the .NET WCF client (System.ServiceModel.NetTcp, t/interop/dotnet) and the Mono
#              WCF client (t/interop/mono), each call checked for which service answered.
#              Over TLS only the .NET client: NetTcpBinding(SecurityMode.Transport), no client
#              credential, trusting only a CA made here, and checking the DNS identity localhost.
#
# Why a second nettcpd: the passthrough route needs a backend that answers the Upgrade
# Request and runs the server side of TLS itself, i.e. a WCF service with transport security.
# None can run here: Mono's net.tcp has no TLS upgrade, and neither .NET Framework WCF nor
# CoreWCF is available. nettcpd #2 with tls = terminate in front of the plain service D is,
# on the wire, exactly such a backend, so nettcpd #1 has to pass the upgrade and the TLS
# records through untouched for the .NET client to reach D.
#
# Run by `make check` with NETTCPD (the daemon binary) and NETTCPD_SRCDIR (the source tree)
# set; by hand: NETTCPD=$PWD/src/nettcpd bash t/interop.sh. Exit 0 pass, 1 fail, 77 skip.
# Needs mono-complete (else SKIP); dotnet is optional (without it the .NET part, and so every
# TLS call, is skipped with a NOTICE), and so is the openssl command (without it the TLS
# routes are left out, with a NOTICE). Build outputs, and the throwaway test CA and server
# certificate, go to $NETTCPD_INTEROP_BUILDDIR (default t/interop/build below the current
# directory, removed by `make clean`).
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
DAEMON_PID=      # nettcpd on the public port
DAEMON2_PID=     # nettcpd #2, the TLS-terminating backend of /Relayed
cleanup() {
    local p
    for p in "${PIDS[@]}" $DAEMON_PID $DAEMON2_PID; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}" $DAEMON_PID $DAEMON2_PID; do wait "$p" 2>/dev/null; done
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

# ---------------------------------------------------------------- TLS material
# A throwaway CA and a server certificate it signs (CN=localhost, subjectAltName
# DNS:localhost and IP:127.0.0.1), made afresh on every run; the CA key is deleted
# once it has signed. nettcpd reads server-chain.pem (the certificate, then the CA)
# and server.key; the .NET client trusts ca.pem and nothing else.
HAVE_TLS=no
TLSDIR=$BUILD/tls
make_certs() {
    rm -rf "$TLSDIR" && mkdir -p "$TLSDIR" || return 1
    (
        umask 077
        cd "$TLSDIR" || exit 1
        printf '%s\n' \
            'basicConstraints = critical, CA:FALSE' \
            'keyUsage = critical, digitalSignature, keyEncipherment' \
            'extendedKeyUsage = serverAuth' \
            'subjectAltName = DNS:localhost, IP:127.0.0.1' \
            'subjectKeyIdentifier = hash' \
            'authorityKeyIdentifier = keyid' >server.ext &&
        openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 2 \
            -subj "/CN=nettcpd interop test CA" -keyout ca.key -out ca.pem \
            -addext "basicConstraints = critical, CA:TRUE" \
            -addext "keyUsage = critical, keyCertSign, cRLSign" &&
        openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
            -keyout server.key -out server.csr &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -sha256 -days 2 \
            -set_serial "0x$(openssl rand -hex 8)" -extfile server.ext -out server.pem &&
        cat server.pem ca.pem >server-chain.pem &&
        rm -f ca.key server.csr server.ext
    )
}
if ! command -v openssl >/dev/null 2>&1; then
    echo "NOTICE: interop: openssl command absent, TLS routes left out"
elif make_certs >"$TMP/openssl.log" 2>&1; then
    HAVE_TLS=yes
else
    fail "making the test CA and server certificate with openssl"
fi

# ---------------------------------------------------------------- ports
# Six free loopback ports, bound without SO_REUSEADDR (so none is in TIME-WAIT:
# Mono's listener would refuse it), then released for the services and nettcpd.
free_ports() { # COUNT
    if command -v python3 >/dev/null 2>&1; then
        python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
    else   # fallback: distinct random ports nobody answers on
        local out=() p
        while [ ${#out[@]} -lt "$1" ]; do
            p=$((20000 + RANDOM % 30000))
            [[ " ${out[*]} " == *" $p "* ]] && continue
            (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || out+=("$p")
        done
        echo "${out[@]}"
    fi
}
read -r PUB PA PB PC PD P2 < <(free_ports 6)
if [ -z "${P2:-}" ]; then fail "could not pick free ports"; finish; fi
echo "ports: nettcpd $PUB, service A $PA, B $PB, C $PC, D $PD, nettcpd #2 $P2"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------- services
# All started at once, then waited for one by one.
SERVICES=()
declare -A SERVICE_PID
start_service() { # NAME PUBLIC-URI PRIVATE-URI
    mono "$MONO_OUT/InteropService.exe" --name "$1" --address "$2" --listen "$3" >"$TMP/service-$1.log" 2>&1 &
    PIDS+=($!)
    SERVICES+=("$1")
    SERVICE_PID[$1]=$!
}
wait_service() { # NAME
    local log="$TMP/service-$1.log" i
    for i in $(seq 1 300); do
        grep -qs '^LISTENING' "$log" && return 0
        kill -0 "${SERVICE_PID[$1]}" 2>/dev/null || break
        sleep 0.1
    done
    fail "Mono service $1 did not start"
    return 1
}
start_service A "net.tcp://127.0.0.1:$PUB/Calculator" "net.tcp://127.0.0.1:$PA/Calculator"
start_service B "net.tcp://127.0.0.1:$PUB/Echo/Deep" "net.tcp://127.0.0.1:$PB/Echo/Deep"
if [ "$HAVE_TLS" = yes ]; then
    # The TLS clients dial localhost, the certificate's name. Mono checks the SOAP To
    # by port and path only, but the public address says localhost all the same.
    start_service C "net.tcp://localhost:$PUB/Secure" "net.tcp://127.0.0.1:$PC/Secure"
    start_service D "net.tcp://localhost:$PUB/Relayed" "net.tcp://127.0.0.1:$PD/Relayed"
fi
for s in "${SERVICES[@]}"; do wait_service "$s" || finish; done

# ---------------------------------------------------------------- nettcpd
CONF=$TMP/nettcpd.ini
cat >"$CONF" <<EOF
[global]
listen = 127.0.0.1:$PUB
preamble_timeout = 10s
connect_timeout = 2s
log_level = debug

[calculator]
via = net.tcp://+/Calculator
backend = 127.0.0.1:$PA

[echo]
via = net.tcp://+/Echo
backend = 127.0.0.1:$PB
EOF
if [ "$HAVE_TLS" = yes ]; then
    cat >>"$CONF" <<EOF

[secure]
via = net.tcp://+/Secure
backend = 127.0.0.1:$PC
tls = terminate
tls_cert = $TLSDIR/server-chain.pem
tls_key = $TLSDIR/server.key

# tls = passthrough (the default): the client runs TLS with nettcpd #2
[relayed]
via = net.tcp://+/Relayed
backend = 127.0.0.1:$P2
EOF
    CONF2=$TMP/nettcpd2.ini
    cat >"$CONF2" <<EOF
[global]
listen = 127.0.0.1:$P2
preamble_timeout = 10s
connect_timeout = 2s
log_level = debug

[relayed]
via = net.tcp://+/Relayed
backend = 127.0.0.1:$PD
tls = terminate
tls_cert = $TLSDIR/server-chain.pem
tls_key = $TLSDIR/server.key
tls_min_version = 1.3
EOF
fi

start_daemon() { # NAME LOGNAME CONFIG PORT : checks the config, starts nettcpd, sets STARTED_PID
    local i
    if "$NETTCPD" -t -c "$3" >"$TMP/$2-check.log" 2>&1; then
        pass "$1 -t accepts the test config"
    else
        fail "$1 -t rejects the test config"
    fi
    "$NETTCPD" -c "$3" >"$TMP/$2.log" 2>&1 &
    STARTED_PID=$!
    for i in $(seq 1 100); do
        port_open "$4" && return 0
        kill -0 "$STARTED_PID" 2>/dev/null || break
        sleep 0.1
    done
    port_open "$4" && return 0
    fail "$1 is not accepting on 127.0.0.1:$4"
    return 1
}
start_daemon nettcpd nettcpd "$CONF" "$PUB"; rc=$?; DAEMON_PID=$STARTED_PID
[ "$rc" -eq 0 ] || finish
if [ "$HAVE_TLS" = yes ]; then
    start_daemon "nettcpd #2" nettcpd2 "$CONF2" "$P2"; rc=$?; DAEMON2_PID=$STARTED_PID
    [ "$rc" -eq 0 ] || finish
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
TLSURL=net.tcp://localhost:$PUB   # the name in the test certificate

if [ "$HAVE_DOTNET" = yes ]; then
    NET=(dotnet "$BUILD/dotnet/InteropClient.dll")
    run_client dotnet-calculator "${NET[@]}" --address "$URL/Calculator" --expect-name A --calls 2
    run_client dotnet-echo "${NET[@]}" --address "$URL/Echo/Deep" --expect-name B --calls 5 --size 1048576
    run_client dotnet-nowhere "${NET[@]}" --address "$URL/Nowhere" --expect-endpoint-not-found
    if [ "$HAVE_TLS" = yes ]; then
        NETTLS=("${NET[@]}" --tls-ca "$TLSDIR/ca.pem" --dns-identity localhost)
        # nettcpd terminates TLS (1.2: WCF's default offer), service C gets clear net.tcp
        run_client dotnet-tls-secure "${NETTLS[@]}" --address "$TLSURL/Secure" --expect-name C --calls 3 --size 1048576
        # nettcpd passes TLS through to nettcpd #2, which terminates it (1.3 only) for service D
        run_client dotnet-tls-relayed "${NETTLS[@]}" --tls13 --address "$TLSURL/Relayed" --expect-name D --calls 3 --size 1048576
        # no upgrade asked for on a terminating route: the framing Fault UpgradeInvalid
        run_client dotnet-plain-secure "${NET[@]}" --address "$TLSURL/Secure" --expect-upgrade-invalid
    fi
fi
MC=(mono "$MONO_OUT/InteropClient.exe")
run_client mono-calculator "${MC[@]}" --address "$URL/Calculator" --expect-name A --calls 2
run_client mono-echo "${MC[@]}" --address "$URL/Echo/Deep" --expect-name B --calls 3 --size 1048576
run_client mono-nowhere "${MC[@]}" --address "$URL/Nowhere" --expect-endpoint-not-found
if [ "$HAVE_TLS" = yes ]; then
    run_client mono-plain-secure "${MC[@]}" --address "$TLSURL/Secure" --expect-upgrade-invalid
fi

# ---------------------------------------------------------------- shutdown
stop_daemon() { # NAME PID
    local i rc
    kill -TERM "$2" 2>/dev/null
    for i in $(seq 1 100); do
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$2" 2>/dev/null; then
        fail "$1 still running 10 s after SIGTERM"
        kill -KILL "$2" 2>/dev/null
        wait "$2" 2>/dev/null
    else
        wait "$2"; rc=$?
        if [ "$rc" -eq 0 ]; then pass "$1 exited 0 on SIGTERM"; else fail "$1 exited $rc on SIGTERM"; fi
    fi
}
stop_daemon nettcpd "$DAEMON_PID"
DAEMON_PID=
if [ -n "$DAEMON2_PID" ]; then
    stop_daemon "nettcpd #2" "$DAEMON2_PID"
    DAEMON2_PID=
fi
finish
