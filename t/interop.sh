#!/usr/bin/env bash
# Interop test: real WCF net.tcp clients talk through nettcpd to real WCF services.
#
#   service A  Mono WCF, endpoint address net.tcp://127.0.0.1:PUB/Calculator, listenUri :PA
#   service B  Mono WCF, endpoint address net.tcp://127.0.0.1:PUB/Echo/Deep, listenUri :PB
#   service C  Mono WCF, endpoint address net.tcp://localhost:PUB/Secure, listenUri :PC
#   service D  Mono WCF, endpoint address net.tcp://localhost:PUB/Relayed, listenUri :PD
#   service E  Mono WCF, endpoint address net.tcp://127.0.0.1:PUB/RelayE, listenUri :PE,
#              behind relay E (t/interop/wcf_session_relay.py) on RE; F likewise: /RelayF, PF, RF
#   service G  Mono WCF, endpoint address net.tcp://localhost:PUB/SecureG, listenUri :PG,
#              behind relay G on RG; H likewise: /SecureH, PH, RH
#   nettcpd    listens on PUB; /Calculator -> PZ (down), then PA (backend list, balance = first),
#              /Echo -> PB, anything else -> EndpointNotFound;
#              /Secure -> PC with tls = terminate (nettcpd runs the TLS upgrade itself);
#              /Relayed -> P2 with tls = passthrough (the upgrade goes to the backend untouched);
#              /RelayE -> RE, /RelayF -> RF;
#              /SecureG -> RG (route [tls_g]) and /SecureH -> RH (route [tls_h]), both with
#              tls = terminate, [tls_h] with a second server certificate (its own key, the
#              same test CA, also valid for localhost)
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
# Why the relays: nettcpd follows a session to its End records, routes the next preamble
# on the same client connection afresh, and pools the backend connection. The .NET client
# does reuse its connection (it pools it per host:port: a channel to /RelayF after one to
# /RelayE sends its preamble on the same socket), but only if the service answers the
# client's End with End and then reads the next preamble, as a WCF server does. A Mono
# service does neither (the .NET client then silently dials again, which proves nothing),
# and no WCF server can run here. Each relay plays the WCF server's part on the connection
# and hands every session to its Mono service over a fresh connection of its own. The check
# passes only if E answers the first call, F the second and E the third, nettcpd's debug log
# shows the client connection of the first session carrying the second to route [relay_f]
# and the third to route [relay_e] on the pooled backend connection, and relay E saw both
# its sessions on one connection.
#
# The same over TLS: .NET pools the raw connection under the TLS of a channel, so after End
# both ways it leaves its TLS stream without close_notify and sends the next channel's
# preamble in clear, to be upgraded afresh. One client process makes channels to /SecureG,
# /SecureH and /SecureG on localhost:PUB; the check passes only if G, H and G answer, the
# client accepted the first certificate, then the second, nettcpd's debug log shows one
# client connection carrying all three sessions, each with its own handshake, the client
# leaving its TLS stream after each End ("as WCF does"), the third session on route [tls_g]
# on the backend connection the first left in the pool, and nothing about that connection
# above debug (so nothing aborted); and relay G saw both its sessions on one connection.
# G and H are services and relays of their own, not E and F again: a Mono service checks
# the path of the SOAP To, which is the address the client dials.
#
# Run by `make check` with NETTCPD (the daemon binary) and NETTCPD_SRCDIR (the source tree)
# set; by hand: NETTCPD=$PWD/src/nettcpd bash t/interop.sh. Exit 0 pass, 1 fail, 77 skip.
# Needs mono-complete (else SKIP); dotnet is optional (without it the .NET part, and so every
# TLS call and the session re-routing checks, is skipped with a NOTICE), and so are the openssl
# command (without it the TLS routes, and so the TLS session re-routing check, are left out,
# with a NOTICE) and python3 (without it the relays, and so both session re-routing checks,
# are left out, with a NOTICE). Build outputs, and the throwaway test CA and server
# certificates, go to $NETTCPD_INTEROP_BUILDDIR (default t/interop/build below the current
# directory, removed by `make clean`).
set -u
. "$(dirname "$0")/interop/lib.sh"
BUILD=${NETTCPD_INTEROP_BUILDDIR:-t/interop/build}

if ! command -v mono >/dev/null 2>&1 || ! command -v mcs >/dev/null 2>&1; then
    echo "SKIP: interop: mono-complete not installed (apt-get install mono-complete)"
    exit 77
fi
need_nettcpd
interop_dirs nettcpd-interop
DAEMON_PID=      # nettcpd on the public port
DAEMON2_PID=     # nettcpd #2, the TLS-terminating backend of /Relayed

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
    if dotnet_build "$IDIR/dotnet/InteropClient.csproj" "$BUILD/dotnet"; then
        HAVE_DOTNET=yes
    else
        fail "build of the .NET client (dotnet build; NuGet System.ServiceModel.NetTcp 10.1.0)"
    fi
else
    echo "NOTICE: interop: .NET SDK absent, .NET WCF client part (and the session re-routing checks) skipped"
fi
# The session relays (and python3, which runs them) matter only to the .NET client.
HAVE_RELAY=no
if [ "$HAVE_DOTNET" = yes ]; then
    if command -v python3 >/dev/null 2>&1; then
        HAVE_RELAY=yes
    else
        echo "NOTICE: interop: python3 absent, session re-routing checks (wcf_session_relay.py) skipped"
    fi
fi

# ---------------------------------------------------------------- TLS material
# A throwaway CA and two server certificates it signs, each with a key of its own
# (CN=localhost, subjectAltName DNS:localhost and IP:127.0.0.1), made afresh on every
# run; the CA key is deleted once it has signed. nettcpd reads server-chain.pem (the
# certificate, then the CA) and server.key, and for route [tls_h] server2-chain.pem and
# server2.key; the .NET client trusts ca.pem and nothing else.
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
        openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
            -keyout server2.key -out server2.csr &&
        openssl x509 -req -in server2.csr -CA ca.pem -CAkey ca.key -sha256 -days 2 \
            -set_serial "0x$(openssl rand -hex 8)" -extfile server.ext -out server2.pem &&
        cat server2.pem ca.pem >server2-chain.pem &&
        rm -f ca.key server.csr server2.csr server.ext
    )
}
if ! command -v openssl >/dev/null 2>&1; then
    echo "NOTICE: interop: openssl command absent, TLS routes (and the TLS session re-routing check) left out"
elif make_certs >"$TMP/openssl.log" 2>&1; then
    HAVE_TLS=yes
else
    fail "making the test CA and server certificate with openssl"
fi

# ---------------------------------------------------------------- ports
# Fifteen: the services, the relays, the daemons, and a member nobody serves.
read -r PUB PA PB PC PD P2 PE PF RE RF PG PH RG RH PZ < <(free_ports 15)
if [ -z "${PZ:-}" ]; then fail "could not pick free ports"; finish; fi
echo "ports: nettcpd $PUB, service A $PA, B $PB, C $PC, D $PD, nettcpd #2 $P2," \
    "service E $PE, F $PF, relay E $RE, F $RF, service G $PG, H $PH, relay G $RG, H $RH," \
    "a member nobody serves $PZ"

# ---------------------------------------------------------------- services
# All started at once, then waited for one by one.
SERVICES=()
declare -A SERVICE_PID SERVICE_LOG
started() { # KEY LOGFILE : records the process just started in the background
    PIDS+=($!)
    SERVICES+=("$1")
    SERVICE_PID[$1]=$!
    SERVICE_LOG[$1]=$2
}
start_service() { # NAME PUBLIC-URI PRIVATE-URI
    mono "$MONO_OUT/InteropService.exe" --name "$1" --address "$2" --listen "$3" >"$TMP/service-$1.log" 2>&1 &
    started "Mono service $1" "$TMP/service-$1.log"
}
start_relay() { # NAME PORT SERVICE-PORT SERVICE-URI : a WCF-like server in front of a Mono service
    python3 "$IDIR/wcf_session_relay.py" --name "$1" --listen "127.0.0.1:$2" \
        --service "127.0.0.1:$3" --service-via "$4" >"$TMP/relay-$1.log" 2>&1 &
    started "relay $1" "$TMP/relay-$1.log"
}
wait_service() { # KEY
    wait_line "${SERVICE_LOG[$1]}" '^LISTENING' "${SERVICE_PID[$1]}" "$1 did not start"
}
start_service A "net.tcp://127.0.0.1:$PUB/Calculator" "net.tcp://127.0.0.1:$PA/Calculator"
start_service B "net.tcp://127.0.0.1:$PUB/Echo/Deep" "net.tcp://127.0.0.1:$PB/Echo/Deep"
if [ "$HAVE_TLS" = yes ]; then
    # The TLS clients dial localhost, the certificate's name. Mono checks the SOAP To
    # by port and path only, but the public address says localhost all the same.
    start_service C "net.tcp://localhost:$PUB/Secure" "net.tcp://127.0.0.1:$PC/Secure"
    start_service D "net.tcp://localhost:$PUB/Relayed" "net.tcp://127.0.0.1:$PD/Relayed"
fi
if [ "$HAVE_RELAY" = yes ]; then
    # The client dials PUB/RelayE: that is the To the Mono service checks. The relay sends
    # it sessions with the service's own Via, the listenUri.
    start_service E "net.tcp://127.0.0.1:$PUB/RelayE" "net.tcp://127.0.0.1:$PE/RelayE"
    start_service F "net.tcp://127.0.0.1:$PUB/RelayF" "net.tcp://127.0.0.1:$PF/RelayF"
    start_relay E "$RE" "$PE" "net.tcp://127.0.0.1:$PE/RelayE"
    start_relay F "$RF" "$PF" "net.tcp://127.0.0.1:$PF/RelayF"
    if [ "$HAVE_TLS" = yes ]; then
        # the same behind the terminating routes [tls_g] and [tls_h], dialled as localhost
        start_service G "net.tcp://localhost:$PUB/SecureG" "net.tcp://127.0.0.1:$PG/SecureG"
        start_service H "net.tcp://localhost:$PUB/SecureH" "net.tcp://127.0.0.1:$PH/SecureH"
        start_relay G "$RG" "$PG" "net.tcp://127.0.0.1:$PG/SecureG"
        start_relay H "$RH" "$PH" "net.tcp://127.0.0.1:$PH/SecureH"
    fi
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
; the first member is down: a call fails over to A, unseen by the client
backend = 127.0.0.1:$PZ, 127.0.0.1:$PA
balance = first

[echo]
via = net.tcp://+/Echo
backend = 127.0.0.1:$PB
EOF
if [ "$HAVE_RELAY" = yes ]; then
    cat >>"$CONF" <<EOF

# WCF-like backends (the session relays): sessions followed, connections pooled
[relay_e]
via = net.tcp://+/RelayE
backend = 127.0.0.1:$RE

[relay_f]
via = net.tcp://+/RelayF
backend = 127.0.0.1:$RF
EOF
fi
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
    if [ "$HAVE_RELAY" = yes ]; then
        cat >>"$CONF" <<EOF

# terminated TLS in front of WCF-like backends, each route with a certificate of its own
[tls_g]
via = net.tcp://+/SecureG
backend = 127.0.0.1:$RG
tls = terminate
tls_cert = $TLSDIR/server-chain.pem
tls_key = $TLSDIR/server.key

[tls_h]
via = net.tcp://+/SecureH
backend = 127.0.0.1:$RH
tls = terminate
tls_cert = $TLSDIR/server2-chain.pem
tls_key = $TLSDIR/server2.key
EOF
    fi
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

start_daemon nettcpd nettcpd "$CONF" "$PUB"; rc=$?; DAEMON_PID=$STARTED_PID
[ "$rc" -eq 0 ] || finish
if [ "$HAVE_TLS" = yes ]; then
    start_daemon "nettcpd #2" nettcpd2 "$CONF2" "$P2"; rc=$?; DAEMON2_PID=$STARTED_PID
    [ "$rc" -eq 0 ] || finish
fi

# ---------------------------------------------------------------- calls
URL=net.tcp://127.0.0.1:$PUB
TLSURL=net.tcp://localhost:$PUB   # the name in the test certificate

# The lines nettcpd logged about client PEER after "route " (a routed line names
# the Via first while nettcpd holds the preamble), or after "client PEER: " when no
# route is set; byte counts as N, a TLS handshake without its version and cipher.
client_log() { # PEER
    sed -nE "s/.* client ${1//./\\.}(( via '[^']*')? route |: )(.*)/\3/p" "$TMP/nettcpd.log" |
        sed -E 's/[0-9]+ bytes up, [0-9]+ down/N bytes up, N down/; s/^(\[[^]]*\]: TLS handshake done) \(.*\)$/\1/'
}
# Prints the first of LINES that client_log PEER lacks, in this order; fails if any.
client_logged() { # PEER LINES...
    local -a got
    local i=0 want
    mapfile -t got < <(client_log "$1")
    for want in "${@:2}"; do
        while [ "$i" -lt "${#got[@]}" ] && [ "${got[$i]}" != "$want" ]; do i=$((i + 1)); done
        [ "$i" -lt "${#got[@]}" ] || { echo "$want"; return 1; }
        i=$((i + 1))
    done
}
# After run_client dotnet-reuse (channels to /RelayE, /RelayF, /RelayE): nettcpd must have
# routed all three sessions of the client's one connection afresh, and taken relay E's
# connection from its pool for the third; the relays must have seen the same.
check_reuse() {
    local peer= missing= i rel name session path
    local ended="ended after N bytes up, N down; backend connection pooled"
    for i in $(seq 1 20); do   # nettcpd logs an End as it delivers it: wait a moment
        peer=$(sed -nE 's/.* client ([0-9.]+:[0-9]+) route \[relay_e\]: session 1 ended .*/\1/p' \
            "$TMP/nettcpd.log" | head -n 1)
        if [ -z "$peer" ]; then
            missing="no client connection whose session 1 on route [relay_e] ended"
        else
            missing=$(client_logged "$peer" \
                "[relay_e]: forwarding to 127.0.0.1:$RE" "[relay_e]: session 1 $ended" \
                "[relay_f]: forwarding to 127.0.0.1:$RF" "[relay_f]: session 2 $ended" \
                "[relay_e]: forwarding to 127.0.0.1:$RE on a pooled connection" \
                "[relay_e]: session 3 $ended") && break
            missing="nettcpd did not log 'client $peer route $missing'"
        fi
        sleep 0.1
    done
    # relay E: sessions 1 and 2 of its connection 1 (nettcpd's 1 and 3), and no other
    # connection; relay F: session 1 of its connection 1 (nettcpd's 2)
    for rel in "E 1 RelayE" "E 2 RelayE" "F 1 RelayF"; do
        [ -z "$missing" ] || break
        read -r name session path <<<"$rel"
        grep -F "relay $name conn 1 from " "$TMP/relay-$name.log" | grep -qF " session $session: Via '$URL/$path'" &&
            grep -qF "relay $name conn 1 session $session: 1 message(s) relayed, End answered" "$TMP/relay-$name.log" ||
            missing="relay $name did not serve session $session with Via $URL/$path on its connection 1"
    done
    if [ -z "$missing" ] && grep -qE "relay . conn [^1]|error:" "$TMP/relay-E.log" "$TMP/relay-F.log"; then
        missing="a relay logged another connection or an error"
    fi
    if [ -z "$missing" ]; then
        pass "nettcpd re-routed the sessions of client connection $peer: 1 to [relay_e]," \
            "2 to [relay_f], 3 to [relay_e] on the backend connection pooled after 1" \
            "(relay E: sessions 1 and 3 on one connection)"
    else
        fail "session re-routing on a pooled client connection: $missing"
    fi
}

# After run_client dotnet-tls-reuse (channels to /SecureG, /SecureH, /SecureG, each over
# TLS that nettcpd terminates): the same as check_reuse, with a handshake for each session,
# the client leaving its TLS stream in clear after each End but the last, then closing in
# clear between sessions; nothing about that connection logged above debug, so not aborted.
# The client must have accepted the first certificate, then the second (route [tls_h]'s),
# then no other than the first (a resumed handshake presents none).
check_tls_reuse() {
    local peer= missing= i rel name session path t1 t2 line
    local ended="ended after N bytes up, N down; backend connection pooled"
    local left="the client left its TLS stream after End, as WCF does when it pools a connection"
    local -a seen
    for i in $(seq 1 20); do   # the close comes after the last End: wait a moment
        peer=$(sed -nE 's/.* client ([0-9.]+:[0-9]+) route \[tls_g\]: session 1 ended .*/\1/p' \
            "$TMP/nettcpd.log" | head -n 1)
        if [ -z "$peer" ]; then
            missing="no client connection whose session 1 on route [tls_g] ended"
        else
            missing=$(client_logged "$peer" \
                "[tls_g]: TLS handshake done" "[tls_g]: forwarding to 127.0.0.1:$RG" \
                "[tls_g]: session 1 $ended" "$left" \
                "[tls_h]: TLS handshake done" "[tls_h]: forwarding to 127.0.0.1:$RH" \
                "[tls_h]: session 2 $ended" "$left" \
                "[tls_g]: TLS handshake done" "[tls_g]: forwarding to 127.0.0.1:$RG on a pooled connection" \
                "[tls_g]: session 3 $ended" "end of stream after 0 preamble bytes, closed") && break
            missing="nettcpd did not log '$missing' for client $peer after the lines before"
        fi
        sleep 0.1
    done
    if [ -z "$missing" ]; then
        line=$(grep -E " client ${peer//./\\.}[: ]" "$TMP/nettcpd.log" | grep -F aborted | head -n 1)
        [ -z "$line" ] || missing="nettcpd logged client $peer as aborted: $line"
    fi
    if [ -z "$missing" ]; then
        line=$(grep -E " client ${peer//./\\.}[: ]" "$TMP/nettcpd.log" | grep -vF ": debug: client " | head -n 1)
        [ -z "$line" ] || missing="nettcpd logged client $peer above debug: $line"
    fi
    if [ -z "$missing" ] && [ "$(grep -cE " client .*route \[tls_[gh]\]: forwarding to " "$TMP/nettcpd.log")" -ne 3 ]; then
        missing="another client connection was routed to [tls_g] or [tls_h]"
    fi
    # which certificate each handshake presented, by SHA-1 thumbprint
    if [ -z "$missing" ]; then
        t1=$(openssl x509 -noout -fingerprint -sha1 -in "$TLSDIR/server.pem" | sed 's/.*=//; s/://g')
        t2=$(openssl x509 -noout -fingerprint -sha1 -in "$TLSDIR/server2.pem" | sed 's/.*=//; s/://g')
        mapfile -t seen < <(sed -nE 's/^server certificate ([0-9A-F]+) .*/\1/p' "$TMP/dotnet-tls-reuse.log")
        if [ "${#seen[@]}" -lt 2 ] || [ "${seen[0]}" != "$t1" ] || [ "${seen[1]}" != "$t2" ] ||
           { [ "${#seen[@]}" -gt 2 ] && printf '%s\n' "${seen[@]:2}" | grep -qvxF "$t1"; }; then
            missing="the client accepted the certificates ${seen[*]:-none}; want $t1 (server.pem),"
            missing+=" $t2 (server2.pem, route [tls_h]), then $t1 if any"
        fi
    fi
    for rel in "G 1 SecureG" "G 2 SecureG" "H 1 SecureH"; do
        [ -z "$missing" ] || break
        read -r name session path <<<"$rel"
        grep -F "relay $name conn 1 from " "$TMP/relay-$name.log" | grep -qF " session $session: Via '$TLSURL/$path'" &&
            grep -qF "relay $name conn 1 session $session: 1 message(s) relayed, End answered" "$TMP/relay-$name.log" ||
            missing="relay $name did not serve session $session with Via $TLSURL/$path on its connection 1"
    done
    if [ -z "$missing" ] && grep -qE "relay . conn [^1]|error:" "$TMP/relay-G.log" "$TMP/relay-H.log"; then
        missing="a relay logged another connection or an error"
    fi
    if [ -z "$missing" ]; then
        pass "nettcpd re-routed the TLS sessions of client connection $peer, a handshake each:" \
            "1 to [tls_g], 2 to [tls_h] (its own certificate), 3 to [tls_g] on the backend connection" \
            "pooled after 1; the client left TLS after each End, nothing aborted (relay G: sessions 1 and 3 on one connection)"
    else
        fail "session re-routing over terminated TLS on a pooled client connection: $missing"
    fi
}

if [ "$HAVE_DOTNET" = yes ]; then
    NET=(dotnet "$BUILD/dotnet/InteropClient.dll")
    run_client dotnet-calculator "${NET[@]}" --address "$URL/Calculator" --expect-name A --calls 2
    if grep -qF "backend 127.0.0.1:$PZ: connect: Connection refused; trying the next member, 127.0.0.1:$PA" \
        "$TMP/nettcpd.log"; then
        pass "the .NET client's call failed over from a member that is down to A"
    else
        fail "no failover from the member that is down ($PZ) to A in the nettcpd log"
    fi
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
    if [ "$HAVE_RELAY" = yes ]; then
        # three channels in turn, which .NET sends on one pooled connection (see the top)
        run_client dotnet-reuse "${NET[@]}" --address "$URL/RelayE" --expect-name E \
            --then "$URL/RelayF" F --then "$URL/RelayE" E
        check_reuse
        if [ "$HAVE_TLS" = yes ]; then
            # the same over TLS that nettcpd terminates: a handshake per channel, [tls_h]
            # with another certificate, and the client's connection still pooled (see the top)
            run_client dotnet-tls-reuse "${NETTLS[@]}" --address "$TLSURL/SecureG" --expect-name G \
                --then "$TLSURL/SecureH" H --then "$TLSURL/SecureG" G
            check_tls_reuse
        fi
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
    kill -TERM "$2" 2>/dev/null
    if ! wait_exit "$2"; then
        fail "$1 still running 10 s after SIGTERM"
        kill -KILL "$2" 2>/dev/null
        wait "$2" 2>/dev/null
    elif [ "$EXITED" -eq 0 ]; then
        pass "$1 exited 0 on SIGTERM"
    else
        fail "$1 exited $EXITED on SIGTERM"
    fi
    forget_pid "$2"
}
stop_daemon nettcpd "$DAEMON_PID"
if [ -n "$DAEMON2_PID" ]; then
    stop_daemon "nettcpd #2" "$DAEMON2_PID"
fi
finish
