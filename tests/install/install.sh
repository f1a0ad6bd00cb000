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
    etc/logrotate.d/socketnautd \
    share/man/man8/socketnautd.8 share/man/man5/socketnaut.conf.5 \
    share/man/man1/socketnaut-hello.1 \
    share/man/man7/socketnaut-agent.7 share/man/man3/socketnaut.3 \
    lib/systemd/system/socketnautd.service include/socketnaut.h \
    include/socketnaut/proto.h "$libdir/libsocketnaut.a" \
    "$libdir/libsocketnaut.so.0" "$libdir/pkgconfig/socketnaut.pc" \
    lib/node_modules/socketnaut-agent/socketnaut-agent.js \
    lib/node_modules/socketnaut-agent/package.json; do
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
for f in sbin/socketnautctl share/man/man8/socketnautctl.8; do
	[ -e "$stage/d/opt/sn/$f" ] || fail "$f not installed"
done
grep -q '^ExecReload=/opt/sn/sbin/socketnautctl -c /opt/sn/etc/socketnaut.conf ' \
    "$unit" ||
    fail "the unit does not reload through the installed socketnautctl"

# The agents: the Node package importable with NODE_PATH (CommonJS) and
# through `npm install DIR` (ES modules ignore NODE_PATH), the Python module
# from its dist-packages directory, each the installed copy.
nodedir="$stage/d/opt/sn/lib/node_modules"
pyver=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pydir="$stage/d/opt/sn/lib/python$pyver/dist-packages"
for f in package.json README socketnaut-agent.js socketnaut-agent.mjs \
    socketnaut-agent.d.ts socketnaut-agent.d.mts; do
	[ -e "$nodedir/socketnaut-agent/$f" ] || fail "node agent: $f not installed"
done
[ -e "$pydir/socketnaut_agent.py" ] || fail "python agent not installed in $pydir"
if command -v node >/dev/null; then
	proj="$stage/proj"
	mkdir -p "$proj"
	got=$(cd "$proj" && NODE_PATH="$nodedir" node -e '
	    const a = require("socketnaut-agent");
	    console.log(require.resolve("socketnaut-agent"), a.Level.DEBUG,
	        typeof a.createServiceAgent);')
	[ "$got" = "$nodedir/socketnaut-agent/socketnaut-agent.js 7 function" ] ||
	    fail "require with NODE_PATH: $got"
	echo '{ "name": "proj", "private": true, "type": "module" }' > "$proj/package.json"
	if command -v npm >/dev/null; then
		(cd "$proj" && npm install --offline --install-links=false --no-audit --no-fund --silent \
		    "$nodedir/socketnaut-agent") >/dev/null 2>&1 ||
		    fail "npm install $nodedir/socketnaut-agent"
	else
		mkdir -p "$proj/node_modules"
		ln -s "$nodedir/socketnaut-agent" "$proj/node_modules/socketnaut-agent"
	fi
	printf '%s\n' \
	    'import { createServiceAgent, Level, log } from "socketnaut-agent";' \
	    'console.log(Level.DEBUG, typeof createServiceAgent, typeof log.setLevel);' \
	    > "$proj/main.js"
	got=$(cd "$proj" && node main.js) || fail "import in an ES module project"
	[ "$got" = "7 function function" ] || fail "import in an ES module project: $got"
	[ "$(readlink -f "$proj/node_modules/socketnaut-agent")" = \
	    "$(readlink -f "$nodedir/socketnaut-agent")" ] ||
	    fail "the ES module project did not get the installed copy"
fi
got=$(cd "$stage" && PYTHONPATH="$pydir" /usr/bin/python3 -c '
import socketnaut_agent as a
print(a.__file__, a.ServiceAgent(env={}).enabled)') || fail "python import"
[ "$got" = "$pydir/socketnaut_agent.py False" ] || fail "python import: $got"

# PREFIX=/usr: where Debian's own python3 packages go.
mk install-agents DESTDIR="$stage/usr-root" PREFIX=/usr
[ -e "$stage/usr-root/usr/lib/python3/dist-packages/socketnaut_agent.py" ] ||
    fail "PREFIX=/usr: python agent not in /usr/lib/python3/dist-packages"
[ -e "$stage/usr-root/usr/share/nodejs/socketnaut-agent/package.json" ] ||
    fail "PREFIX=/usr: node agent not in /usr/share/nodejs"

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
