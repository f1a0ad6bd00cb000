#!/bin/sh
# The Debian packages: `dpkg-buildpackage -us -uc -b` in a copy of the tree
# (the source tree must not change), then
# - every file `make install` staged is in one of the packages, and the
#   ones the brief names are where Debian wants them, /etc/socketnaut.conf
#   a conffile; lintian reports no error or warning (when installed);
# - the maintainer scripts (dpkg -x does not run them): valid sh, enabling
#   and starting the unit through deb-systemd-helper/-invoke, stopping it on
#   remove;
# - the packages unpacked with dpkg -x into a scratch root: the daemon's
#   version is the package's, -t passes on the packaged config, and the
#   daemon, run from there on free loopback ports, serves the packaged
#   socketnaut-hello and a C worker built against libsocketnaut-dev with
#   pkg-config (linked to the packaged shared library).
# Skipped when dpkg-buildpackage is missing.  Every wait is bounded.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v dpkg-buildpackage >/dev/null 2>&1; then
	echo "deb: SKIP: dpkg-buildpackage is not installed (sh tools/install-deps)"
	exit 0
fi
tmp=$(mktemp -d /tmp/sn-deb-XXXXXX)
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
	echo "deb: FAIL: $*" >&2
	[ ! -s "$tmp/log" ] || { echo "---- daemon log" >&2; cat "$tmp/log" >&2; }
	exit 1
}

version=$(sed -n '1s/^socketnautd (\([^)]*\)).*/\1/p' "$top/debian/changelog")
mkver=$(sed -n 's/^VERSION[[:space:]]*=[[:space:]]*//p' "$top/Makefile")
[ "$version" = "$mkver" ] ||
    fail "debian/changelog says $version, the Makefile's VERSION $mkver"

# The tree as it is, uncommitted changes included, build outputs excluded.
before=$(git -C "$top" status --porcelain 2>/dev/null || true)
src=$tmp/socketnautd-$version
mkdir "$src"
if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$top" && git ls-files -co --exclude-standard -z) |
	    (cd "$top" && tar -cf - --null -T -) | tar -xf - -C "$src"
else
	(cd "$top" && tar -cf - --exclude=./build --exclude=./build-san .) |
	    tar -xf - -C "$src"
fi
# Unit tests run in `make test` already.  Nothing of the calling make
# (SANITIZE=1, BUILD, -j) leaks into the package build.
if ! (cd "$src" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u SANITIZE \
    -u BUILD DEB_BUILD_OPTIONS="nocheck noddebs parallel=2" \
    dpkg-buildpackage -us -uc -b >"$tmp/build.log" 2>&1); then
	tail -n 40 "$tmp/build.log" >&2
	fail "dpkg-buildpackage failed (build dependencies: sh tools/install-deps)"
fi
after=$(git -C "$top" status --porcelain 2>/dev/null || true)
[ "$before" = "$after" ] || fail "building the package changed the source tree"

arch=$(dpkg-architecture -qDEB_HOST_ARCH)
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
main=$tmp/socketnautd_${version}_$arch.deb
lib=$tmp/libsocketnaut0_${version}_$arch.deb
dev=$tmp/libsocketnaut-dev_${version}_$arch.deb
for d in "$main" "$lib" "$dev"; do
	[ -f "$d" ] || fail "$(basename "$d") was not built"
done

# Every staged file is packaged (man pages compressed by dh_compress).
for d in "$main" "$lib" "$dev"; do
	dpkg-deb --fsys-tarfile "$d" | tar -tf - | grep -v '/$' |
	    sed -e 's|^\./||' -e 's|\(/man/man[0-9]/.*\)\.gz$|\1|'
done | sort >"$tmp/packaged"
(cd "$src/debian/tmp" && find . ! -type d | sed 's|^\./||' | sort) >"$tmp/staged"
[ -s "$tmp/staged" ] || fail "nothing staged in debian/tmp"
missing=$(comm -23 "$tmp/staged" "$tmp/packaged")
[ -z "$missing" ] || fail "staged by make install but in no package: $missing"

unitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null ||
    echo /lib/systemd/system)
unitdir=${unitdir#/}
has() { # has DEB PATH...
	d=$1
	shift
	for f in "$@"; do
		dpkg-deb --fsys-tarfile "$d" | tar -tf - | grep -qx "\./$f" ||
		    fail "$(basename "$d") lacks /$f"
	done
}
has "$main" usr/sbin/socketnautd usr/bin/socketnaut-hello etc/socketnaut.conf \
    "$unitdir/socketnautd.service" usr/share/man/man8/socketnautd.8.gz \
    usr/share/man/man5/socketnaut.conf.5.gz \
    usr/share/man/man7/socketnaut-agent.7.gz \
    usr/share/man/man1/socketnaut-hello.1.gz \
    usr/lib/python3/dist-packages/socketnaut_agent.py \
    usr/share/nodejs/socketnaut-agent/socketnaut-agent.js \
    usr/share/nodejs/socketnaut-agent/package.json \
    usr/share/doc/socketnautd/copyright
has "$lib" "usr/lib/$ma/libsocketnaut.so.0"
has "$dev" usr/include/socketnaut.h usr/include/socketnaut/proto.h \
    "usr/lib/$ma/libsocketnaut.so" "usr/lib/$ma/libsocketnaut.a" \
    "usr/lib/$ma/pkgconfig/socketnaut.pc" usr/share/man/man3/socketnaut.3.gz
dpkg-deb --fsys-tarfile "$main" | tar -tf - | grep -q '^\./usr/etc\|^\./usr/local' &&
    fail "socketnautd has files under /usr/etc or /usr/local"
dpkg-deb --fsys-tarfile "$main" | tar -tf - | grep -q 'libsocketnaut' &&
    fail "socketnautd carries libsocketnaut files"

mkdir "$tmp/ctl"
dpkg-deb -e "$main" "$tmp/ctl"
grep -qx /etc/socketnaut.conf "$tmp/ctl/conffiles" ||
    fail "/etc/socketnaut.conf is not a conffile"
for s in postinst prerm postrm; do
	[ -f "$tmp/ctl/$s" ] || fail "no $s"
	sh -n "$tmp/ctl/$s" || fail "$s is not valid sh"
done
grep -q "deb-systemd-helper enable 'socketnautd.service'" "$tmp/ctl/postinst" ||
    fail "postinst does not enable socketnautd.service"
grep -q 'deb-systemd-invoke $_dh_action .socketnautd.service' \
    "$tmp/ctl/postinst" || fail "postinst does not start socketnautd.service"
grep -q "deb-systemd-invoke stop 'socketnautd.service'" "$tmp/ctl/prerm" ||
    fail "prerm does not stop socketnautd.service"
dpkg-deb -f "$lib" Depends | grep -q libc6 || fail "libsocketnaut0 has no shlibs Depends"

if command -v lintian >/dev/null 2>&1; then
	lintian --allow-root -I --fail-on error,warning \
	    "$tmp/socketnautd_${version}_$arch.changes" >"$tmp/lintian" 2>&1 ||
	    { cat "$tmp/lintian" >&2; fail "lintian: errors or warnings"; }
	echo "deb: lintian: no errors or warnings; info:" \
	    $(sed -n 's/^I: [^ ]* \([^ ]*\).*/\1/p' "$tmp/lintian" | sort -u)
else
	echo "deb: lintian not installed: packages not linted"
fi

# Unpacked into a scratch root.
root=$tmp/root
for d in "$main" "$lib" "$dev"; do
	dpkg -x "$d" "$root"
done
daemon=$root/usr/sbin/socketnautd
out=$("$daemon" -V) || fail "socketnautd -V failed"
[ "$out" = "socketnautd $version" ] || fail "-V says \"$out\", not $version"
PATH="$root/usr/bin:$PATH" "$daemon" -t -c "$root/etc/socketnaut.conf" \
    >/dev/null || fail "-t rejects the packaged configuration"
grep -q '^ExecStart=/usr/sbin/socketnautd -c /etc/socketnaut.conf$' \
    "$root/$unitdir/socketnautd.service" ||
    fail "the packaged unit does not run /usr/sbin/socketnautd -c /etc/socketnaut.conf"
grep -aq '/etc/socketnaut.conf' "$daemon" ||
    fail "the packaged daemon does not default to /etc/socketnaut.conf"

# A C worker built against the -dev package, as a user would.
pc=$(PKG_CONFIG_LIBDIR="$root/usr/lib/$ma/pkgconfig" \
    PKG_CONFIG_SYSROOT_DIR="$root" pkg-config --cflags --libs socketnaut) ||
    fail "pkg-config does not find socketnaut in the -dev package"
# shellcheck disable=SC2086
${CC:-cc} -std=gnu11 -D_GNU_SOURCE -o "$tmp/c-logger" \
    "$top/examples/c-logger/logger.c" $pc \
    -Wl,-rpath,"$root/usr/lib/$ma" || fail "cannot build against libsocketnaut-dev"
ldd "$tmp/c-logger" | grep -q "$root/usr/lib/$ma/libsocketnaut.so.0" ||
    fail "the C worker is not linked to the packaged libsocketnaut.so.0"

free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
p1=$(free_port)
p2=$(free_port)
while [ "$p2" = "$p1" ]; do p2=$(free_port); done
mkdir -m 700 "$tmp/run"
cat >"$tmp/test.conf" <<EOF
runtime_dir = "$tmp/run"
kill_timeout = 3s
service "hello" {
    listen = { "127.0.0.1:$p1" }
    command = "$root/usr/bin/socketnaut-hello --socket {socket}"
    worker_count = 1
}
service "c-logger" {
    listen = { "127.0.0.1:$p2" }
    command = "$tmp/c-logger {socket}"
    worker_count = 1
}
EOF
"$daemon" -d -c "$tmp/test.conf" 2>"$tmp/log" &
pid=$!
get() { curl -sS --max-time 2 "http://127.0.0.1:$1/" 2>/dev/null; }
end=$(($(date +%s) + 20))
until get "$p1" | grep -q '^Hello, World!' && get "$p2" | grep -q 'worker pid:'; do
	[ "$(date +%s)" -lt "$end" ] && kill -0 "$pid" 2>/dev/null ||
	    fail "the packaged daemon did not serve both services within 20 s"
	sleep 0.2
done
kill -TERM "$pid"
end=$(($(date +%s) + 20))
while kill -0 "$pid" 2>/dev/null; do
	[ "$(date +%s)" -lt "$end" ] ||
	    fail "the packaged daemon did not stop within 20 s of SIGTERM"
	sleep 0.1
done
wait "$pid" || fail "the packaged daemon exited $? on SIGTERM"
pid=
echo "deb: PASS (built in a copy, $(wc -l <"$tmp/packaged") files in 3 packages," \
    "all staged files packaged, conffile, maintainer scripts, dpkg -x root:" \
    "-V, -t, served hello and a C worker on libsocketnaut-dev)"
