#!/bin/sh
# make install / uninstall, in a build directory of its own (BUILD stays
# untouched):
# - into a staging DESTDIR with PREFIX=/opt/sn: every file lands under
#   PREFIX, the unit names the installed paths, an existing config is kept,
#   and uninstall removes everything but the config;
# - PREFIX=/usr after a build with the default PREFIX: the config goes to
#   /etc, the libraries to the multiarch directory, the agents where python3
#   and node find them, and the binary is rebuilt to read /etc, as the unit
#   says;
# - PREFIX=<scratch dir>, no DESTDIR: the installed daemon, run without -c,
#   reads that prefix's config (OK, then the file:line of an error in it).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
stage=$(mktemp -d /tmp/sn-install-XXXXXX)
trap 'rm -rf "$stage"' EXIT
fail() { echo "install: FAIL: $*" >&2; exit 1; }
# Not sanitized even under `make test SANITIZE=1`: what is installed where
# is the same, and three ASan builds would triple the time.
mk() { make -C "$top" --no-print-directory -s -j2 BUILD="$stage/build" \
    SANITIZE=0 "$@" >/dev/null; }
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null ||
    ${CC:-cc} -print-multiarch 2>/dev/null || true)
libdir=lib${multiarch:+/$multiarch}

# /opt/sn: the file list, the unit, config kept, uninstall.
mk install DESTDIR="$stage/d" PREFIX=/opt/sn
for f in sbin/socketnautd bin/socketnaut-hello etc/socketnaut.conf \
    share/man/man8/socketnautd.8 share/man/man5/socketnaut.conf.5 \
    share/man/man1/socketnaut-hello.1 \
    share/man/man7/socketnaut-agent.7 share/man/man3/socketnaut.3 \
    lib/systemd/system/socketnautd.service include/socketnaut.h \
    include/socketnaut/proto.h "$libdir/libsocketnaut.a" \
    "$libdir/libsocketnaut.so.0" "$libdir/pkgconfig/socketnaut.pc" \
    share/nodejs/socketnaut-agent/socketnaut-agent.js \
    share/nodejs/socketnaut-agent/package.json; do
	[ -e "$stage/d/opt/sn/$f" ] || fail "$f not installed"
done
ls "$stage"/d/opt/sn/lib/python3*/dist-packages/socketnaut_agent.py \
    >/dev/null 2>&1 || fail "the Python agent is not installed"
unit="$stage/d/opt/sn/lib/systemd/system/socketnautd.service"
grep -q '^ExecStart=/opt/sn/sbin/socketnautd -c /opt/sn/etc/socketnaut.conf$' \
    "$unit" || fail "the unit does not name the installed paths"
grep -q '@[A-Z]*@' "$unit" && fail "the unit has unfilled @VARIABLES@"
grep -q '^prefix=/opt/sn' "$stage/d/opt/sn/$libdir/pkgconfig/socketnaut.pc" ||
    fail "socketnaut.pc does not name the prefix"

echo "# edited by the operator" >> "$stage/d/opt/sn/etc/socketnaut.conf"
mk install DESTDIR="$stage/d" PREFIX=/opt/sn
tail -n 1 "$stage/d/opt/sn/etc/socketnaut.conf" | grep -q "edited by the operator" ||
    fail "make install overwrote an existing configuration"

mk uninstall DESTDIR="$stage/d" PREFIX=/opt/sn
left=$(cd "$stage/d/opt/sn" && find . -type f | sort)
[ "$left" = "./etc/socketnaut.conf" ] || fail "uninstall left: $left"

# PREFIX=/usr after a default build: FHS and Debian places, binary rebuilt.
mk all
grep -aq '/usr/local/etc/socketnaut.conf' "$stage/build/socketnautd" ||
    fail "a default build does not read /usr/local/etc/socketnaut.conf"
mk install DESTDIR="$stage/u" PREFIX=/usr
u="$stage/u"
[ -f "$u/etc/socketnaut.conf" ] || fail "PREFIX=/usr: config not in /etc"
[ -e "$u/usr/etc" ] && fail "PREFIX=/usr: something installed in /usr/etc"
[ -f "$u/usr/$libdir/libsocketnaut.so.0" ] ||
    fail "PREFIX=/usr: libsocketnaut not in /usr/$libdir"
grep -q "^libdir=/usr/$libdir\$" "$u/usr/$libdir/pkgconfig/socketnaut.pc" ||
    fail "PREFIX=/usr: socketnaut.pc does not name /usr/$libdir"
grep -q '^ExecStart=/usr/sbin/socketnautd -c /etc/socketnaut.conf$' \
    "$u/usr/lib/systemd/system/socketnautd.service" ||
    fail "PREFIX=/usr: the unit does not name /etc/socketnaut.conf"
grep -aq '/usr/local/etc/socketnaut.conf' "$u/usr/sbin/socketnautd" &&
    fail "PREFIX=/usr: the binary still reads /usr/local/etc (not rebuilt)"
grep -aq '/etc/socketnaut.conf' "$u/usr/sbin/socketnautd" ||
    fail "PREFIX=/usr: the binary does not read /etc/socketnaut.conf"
PYTHONPATH="$u/usr/lib/python3/dist-packages" python3 -c \
    'import socketnaut_agent' || fail "PREFIX=/usr: python3 cannot import the agent"
if command -v node >/dev/null; then
	NODE_PATH="$u/usr/share/nodejs" node -e 'require("socketnaut-agent")' ||
	    fail "PREFIX=/usr: node cannot require the agent"
fi

# A real prefix, no DESTDIR: the binary reads that prefix's config.
p="$stage/p"
mk install PREFIX="$p"
out=$(PATH="$p/bin:$PATH" "$p/sbin/socketnautd" -t 2>&1) ||
    fail "socketnautd -t without -c under PREFIX=$p: $out"
printf 'bogus_option = 1\n' >> "$p/etc/socketnaut.conf"
line=$(wc -l < "$p/etc/socketnaut.conf")
out=$(PATH="$p/bin:$PATH" "$p/sbin/socketnautd" -t 2>&1) &&
    fail "socketnautd -t accepted a bad $p/etc/socketnaut.conf"
case $out in
*"$p/etc/socketnaut.conf:$line"*) ;;
*) fail "the error does not name $p/etc/socketnaut.conf:$line: $out" ;;
esac
echo "install: PASS (files, unit paths, config kept, uninstall, PREFIX=/usr" \
    "rebuilds for /etc, multiarch libdir, agents importable, -t reads" \
    "the prefix's config)"
