#!/bin/sh
# run.sh SRCDIR SECONDS HARNESS... - run each libFuzzer harness for SECONDS
# (make fuzz-smoke), from the build directory, and report the executions.
#
# Each harness NAME runs as fuzz/fuzz_NAME on fuzz/work/NAME/corpus, a copy
# of SRCDIR/fuzz/corpus/NAME that keeps what the fuzzer adds, and also reads
# SRCDIR/fuzz/regress/NAME.  A crash leaves fuzz/work/NAME/crash-* and makes
# this script exit 1; copy the input to SRCDIR/fuzz/regress/NAME/ once the
# bug is fixed, and make check replays it from then on.
set -u

srcdir=$1
seconds=$2
shift 2

status=0
total=0
summary=""
for name in "$@"; do
	bin=fuzz/fuzz_$name
	work=fuzz/work/$name
	mkdir -p "$work/corpus"
	cp "$srcdir/fuzz/corpus/$name/"* "$work/corpus/"
	case $name in
	nmf)    max_len=4096 ;;   # a whole preamble is 2,582 bytes at most
	via)    max_len=2100 ;;   # a Via is 2,048 bytes at most
	flow)   max_len=4096 ;;   # longer only means longer payloads, unread
	acl)    max_len=4096 ;;   # fuzz_acl reads no further
	proxy)  max_len=1100 ;;   # a header is 1,040 bytes at most
	ctlproto) max_len=4200 ;; # a message is 4,096 bytes at most
	*)      max_len=16384 ;;
	esac
	dirs="$work/corpus"
	[ -d "$srcdir/fuzz/regress/$name" ] && dirs="$dirs $srcdir/fuzz/regress/$name"
	echo "fuzz-smoke: $name for ${seconds}s"
	# shellcheck disable=SC2086
	"$bin" -max_total_time="$seconds" -print_final_stats=1 \
	    -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
	    -dict="$srcdir/fuzz/$name.dict" -artifact_prefix="$work/" \
	    $dirs >"$work/log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n 1)
	execs=${execs:-0}
	total=$((total + execs))
	if [ "$rc" -ne 0 ]; then
		status=1
		echo "fuzz-smoke: $name FAILED (exit $rc); the end of $work/log:"
		tail -n 40 "$work/log"
		ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* 2>/dev/null
	fi
	summary="$summary$name: $execs executions$( [ "$rc" -ne 0 ] && echo ', FAILED')
"
done
printf '%s' "$summary" | sed 's/^/fuzz-smoke: /'
echo "fuzz-smoke: total: $total executions"
exit "$status"
