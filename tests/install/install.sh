#!/bin/sh
# make install / uninstall into a staging DESTDIR: every file lands under
# PREFIX, the unit names the installed paths, an existing config is kept,
# and uninstall removes everything but the config.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
stage=$(mktemp -d /tmp/sn-install-XXXXXX)
trap 'rm -rf "$stage"' EXIT
fail() { echo "install: FAIL: $*" >&2; exit 1; }

make -C "$top" --no-print-directory -s install DESTDIR="$stage" PREFIX=/opt/sn \
    BUILD="${BUILD:-build}" >/dev/null
for f in sbin/socketnautd bin/socketnaut-hello etc/socketnaut.conf \
    share/man/man8/socketnautd.8 share/man/man5/socketnaut.conf.5 \
    share/man/man7/socketnaut-agent.7 share/man/man3/socketnaut.3 \
    lib/systemd/system/socketnautd.service include/socketnaut.h \
    include/socketnaut/proto.h lib/libsocketnaut.a lib/libsocketnaut.so.0 \
    lib/pkgconfig/socketnaut.pc; do
	[ -e "$stage/opt/sn/$f" ] || fail "$f not installed"
done
grep -q '^ExecStart=/opt/sn/sbin/socketnautd -c /opt/sn/etc/socketnaut.conf$' \
    "$stage/opt/sn/lib/systemd/system/socketnautd.service" ||
    fail "the unit does not name the installed paths"
grep -q '^prefix=/opt/sn' "$stage/opt/sn/lib/pkgconfig/socketnaut.pc" ||
    fail "socketnaut.pc does not name the prefix"
for f in sbin/socketnautctl share/man/man8/socketnautctl.8; do
	[ -e "$stage/opt/sn/$f" ] || fail "$f not installed"
done
grep -q '^ExecReload=/opt/sn/sbin/socketnautctl -c /opt/sn/etc/socketnaut.conf ' \
    "$stage/opt/sn/lib/systemd/system/socketnautd.service" ||
    fail "the unit does not reload through the installed socketnautctl"

echo "# edited by the operator" >> "$stage/opt/sn/etc/socketnaut.conf"
make -C "$top" --no-print-directory -s install DESTDIR="$stage" PREFIX=/opt/sn \
    BUILD="${BUILD:-build}" >/dev/null
tail -n 1 "$stage/opt/sn/etc/socketnaut.conf" | grep -q "edited by the operator" ||
    fail "make install overwrote an existing configuration"

make -C "$top" --no-print-directory -s uninstall DESTDIR="$stage" PREFIX=/opt/sn \
    BUILD="${BUILD:-build}" >/dev/null
left=$(cd "$stage/opt/sn" && find . -type f | sort)
[ "$left" = "./etc/socketnaut.conf" ] || fail "uninstall left: $left"
echo "install: PASS (files, unit paths, config kept, uninstall)"
