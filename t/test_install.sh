#!/usr/bin/env bash
# make install keeps an operator's configuration: run from the build tree
# (make check, in tree or out of it), it installs into a scratch DESTDIR,
# edits the installed nettcpd.ini as an operator would, installs again and
# uninstalls, and checks what each step leaves:
#   - the first install puts the example at $(sysconfdir)/nettcpd/nettcpd.ini;
#   - the second keeps the edited file and puts the example beside it as
#     nettcpd.ini.dist, saying so;
#   - uninstall removes the .dist and leaves the edited file;
#   - an install and uninstall with the example unedited leaves no file.
set -uo pipefail

builddir=$(cd "$(dirname "${NETTCPD:?set by make check}")/.." && pwd)
srcdir=${NETTCPD_SRCDIR:?set by make check}
example="$srcdir/etc/nettcpd.ini"
make=${MAKE:-make}
failures=0
scratch=$(mktemp -d -t nettcpd-install.XXXXXX) || exit 1
trap 'rm -rf "$scratch"' EXIT

ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
check() { # description command...
    local what=$1
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}
# make TARGET into DESTDIR $1; its output in $scratch/out
run_make() {
    "$make" -s -C "$builddir" "$2" DESTDIR="$1" >"$scratch/out" 2>&1 || {
        cat "$scratch/out"
        fail "make $2 DESTDIR=$1"
        return 1
    }
}
# The installed configuration directory: where nettcpd.ini landed.
confdir_in() {
    local found
    found=$(find "$1" -name nettcpd.ini -type f | head -n 1)
    [ -n "$found" ] && dirname "$found"
}

# ---- an operator's edit survives a second make install
dest="$scratch/edited"
run_make "$dest" install || exit 1
conf=$(confdir_in "$dest") || { fail "first install: no nettcpd.ini under DESTDIR"; exit 1; }
check "first install: nettcpd.ini is the shipped example" cmp -s "$conf/nettcpd.ini" "$example"
check "first install: no nettcpd.ini.dist" test ! -e "$conf/nettcpd.ini.dist"

sed -i 's/^listen = .*/listen = 127.0.0.1:18808   ; edited by the operator/' "$conf/nettcpd.ini"
cp "$conf/nettcpd.ini" "$scratch/edited.ini"
run_make "$dest" install || exit 1
check "second install: the edited nettcpd.ini is kept" cmp -s "$conf/nettcpd.ini" "$scratch/edited.ini"
check "second install: the example is installed as nettcpd.ini.dist" \
    cmp -s "$conf/nettcpd.ini.dist" "$example"
check "second install: says where the example went" grep -q 'nettcpd\.ini\.dist' "$scratch/out"

run_make "$dest" install || exit 1
check "third install: the edited nettcpd.ini is still kept" cmp -s "$conf/nettcpd.ini" "$scratch/edited.ini"

run_make "$dest" uninstall || exit 1
check "uninstall: the edited nettcpd.ini stays" cmp -s "$conf/nettcpd.ini" "$scratch/edited.ini"
check "uninstall: nettcpd.ini.dist is removed" test ! -e "$conf/nettcpd.ini.dist"
left=$(find "$dest" -type f ! -path "$conf/nettcpd.ini")
check "uninstall: nothing else is left" test -z "$left"
[ -z "$left" ] || echo "$left"

# ---- an unedited example is removed by uninstall, as distcheck expects
dest="$scratch/plain"
run_make "$dest" install || exit 1
run_make "$dest" install || exit 1
conf=$(confdir_in "$dest") || { fail "plain install: no nettcpd.ini under DESTDIR"; exit 1; }
check "unedited example installed twice: no nettcpd.ini.dist" test ! -e "$conf/nettcpd.ini.dist"
run_make "$dest" uninstall || exit 1
left=$(find "$dest" -type f)
check "unedited example: uninstall leaves no file" test -z "$left"
[ -z "$left" ] || echo "$left"

echo "test_install.sh: $failures failed"
[ "$failures" = 0 ]
