# t/interop/lib.sh - what the interop scripts (t/interop*.sh) share: their temporary
# directory and the processes they start, stopped by PID on exit; PASS/FAIL counting and
# the summary line; free ports; waiting for a log line, an exit, a nettcpd; the .NET
# build; one client run.  Sourced (bash) before anything else; defines functions and
# the variables below, starts nothing.
#
# SUITE is the script's name (interop_handoff); set INTEROP_WHAT before finish for a
# summary line "interop: WHAT (SUITE): N passed, M failed" (else "interop: N passed, ...").

SRCDIR=${NETTCPD_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
IDIR=$SRCDIR/t/interop
SUITE=$(basename "$0" .sh)
T=20   # seconds: every client's own watchdog and WCF timeouts; `timeout` adds a margin
PIDS=()   # processes started here; stopped by PID on exit
NPASS=0; NFAIL=0

pass() { NPASS=$((NPASS + 1)); echo "PASS $*"; }
fail() { NFAIL=$((NFAIL + 1)); echo "FAIL $*"; }
# The summary line .ci/run collects; with failures, the tail of every log first.
finish() {
    local f
    if [ "$NFAIL" -gt 0 ]; then
        for f in "$TMP"/*.log; do
            [ -s "$f" ] || continue
            echo "---- $(basename "$f")"
            tail -n 40 "$f" | sed 's/^/    /'
        done
    fi
    echo "interop: ${INTEROP_WHAT:+$INTEROP_WHAT ($SUITE): }$NPASS passed, $NFAIL failed"
    [ "$NFAIL" -eq 0 ] && exit 0
    exit 1
}

# Exits 1 (with a FAIL and the summary line) unless NETTCPD names the built daemon.
need_nettcpd() {
    [ -n "${NETTCPD:-}" ] && [ -x "$NETTCPD" ] && return 0
    fail "$SUITE: NETTCPD must name the built nettcpd binary (got '${NETTCPD:-}')"
    TMP=   # no logs yet
    finish
}

# Makes BUILD absolute (creating it) and TMP (removed on exit, with every PID in PIDS
# stopped); exits 1 if it cannot.
interop_dirs() { # TMP-NAME
    mkdir -p "$BUILD" && BUILD=$(cd "$BUILD" && pwd) || exit 1
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || exit 1
    trap cleanup EXIT
    trap 'exit 1' INT TERM HUP
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
# Takes PID out of PIDS once it is reaped, so that cleanup signals no stranger.
forget_pid() { # PID
    local p keep=()
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# COUNT free loopback ports, bound without SO_REUSEADDR (so none is in TIME-WAIT: Mono's
# listener would refuse it), then released for the services and nettcpd. They are
# drawn from below the ephemeral range: a port bind(0) picked could be taken as the
# source port of anyone's connect() before its listener binds it.
free_ports() { # COUNT
    if command -v python3 >/dev/null 2>&1; then
        python3 -c '
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
out = []
while len(out) < int(sys.argv[1]):
    p = random.randrange(10000, max(low, 12000))
    if p in out:
        continue
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
    out.append(p)
print(" ".join(map(str, out)))' "$1"
    else   # fallback: distinct random ports nobody answers on
        local out=() p
        while [ ${#out[@]} -lt "$1" ]; do
            p=$((10000 + RANDOM % 22000))
            [[ " ${out[*]} " == *" $p "* ]] && continue
            (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || out+=("$p")
        done
        echo "${out[@]}"
    fi
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits up to 30 s for a line matching the extended regex in FILE; false if PID died
# first (and then, given WHAT, a FAIL line saying WHAT).
wait_line() { # FILE REGEX PID [WHAT]
    local i
    for i in $(seq 1 300); do
        grep -qsE "$2" "$1" && return 0
        kill -0 "$3" 2>/dev/null || break
        sleep 0.1
    done
    grep -qsE "$2" "$1" && return 0
    [ -z "${4:-}" ] || fail "$4"
    return 1
}
# Waits up to 10 s for PID to exit; its status in EXITED (127 if no child of this shell), or false.
wait_exit() { # PID
    local i
    for i in $(seq 1 100); do
        kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null; EXITED=$?; return 0; }
        sleep 0.1
    done
    return 1
}

# Checks the config (a PASS or FAIL line), starts nettcpd on it (in PIDS; its PID in
# STARTED_PID) and waits up to 10 s for it to accept on PORT (and, given SOCKET, for
# its control socket); false, with a FAIL line, if it does not.
start_daemon() { # NAME LOGNAME CONFIG PORT [SOCKET]
    local i
    if "$NETTCPD" -t -c "$3" >"$TMP/$2-check.log" 2>&1; then
        pass "$1 -t accepts the test config"
    else
        fail "$1 -t rejects the test config"
    fi
    "$NETTCPD" -c "$3" >"$TMP/$2.log" 2>&1 &
    STARTED_PID=$!; PIDS+=("$STARTED_PID")
    for i in $(seq 1 100); do
        daemon_ready "$4" "${5:-}" && return 0
        kill -0 "$STARTED_PID" 2>/dev/null || break
        sleep 0.1
    done
    daemon_ready "$4" "${5:-}" && return 0
    fail "$1 is not accepting on 127.0.0.1:$4${5:+ with its control socket $5}"
    return 1
}
daemon_ready() { port_open "$1" && { [ -z "$2" ] || [ -S "$2" ]; }; }

# dotnet build of PROJECT into OUT (its obj/ beside, in OUT-artifacts, not in the source
# tree; no build servers left running), logged to build-dotnet.log.
dotnet_build() { # PROJECT OUT
    export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
    dotnet build "$1" -c Release -o "$2" --artifacts-path "$2-artifacts" \
        -nodeReuse:false -p:UseSharedCompilation=false >>"$TMP/build-dotnet.log" 2>&1
}

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
