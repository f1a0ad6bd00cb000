#!/bin/sh
# make install / uninstall into a staging DESTDIR: every file lands under
# PREFIX, the unit names the installed paths, an existing config is kept,
# the Node and Python agents import from where they are installed, and
# uninstall removes everything but the config.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
stage=$(mktemp -d /tmp/sn-install-XXXXXX)
trap 'rm -rf "$stage"' EXIT
fail() { echo "install: FAIL: $*" >&2; exit 1; }

make -C "$top" --no-print-directory -s install DESTDIR="$stage" PREFIX=/opt/sn \
    BUILD="${BUILD:-build}" >/dev/null
for f in sbin/socketnautd bin/socketnaut-hello etc/socketnaut.conf \
    etc/logrotate.d/socketnautd \
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

# The agents: the Node package importable with NODE_PATH (CommonJS) and
# through `npm install DIR` (ES modules ignore NODE_PATH), the Python module
# from its dist-packages directory, each the installed copy.
nodedir="$stage/opt/sn/lib/node_modules"
pyver=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pydir="$stage/opt/sn/lib/python$pyver/dist-packages"
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
make -C "$top" --no-print-directory -s install-agents DESTDIR="$stage/usr-root" \
    PREFIX=/usr >/dev/null
[ -e "$stage/usr-root/usr/lib/python3/dist-packages/socketnaut_agent.py" ] ||
    fail "PREFIX=/usr: python agent not in /usr/lib/python3/dist-packages"
[ -e "$stage/usr-root/usr/lib/node_modules/socketnaut-agent/package.json" ] ||
    fail "PREFIX=/usr: node agent not in /usr/lib/node_modules"

echo "# edited by the operator" >> "$stage/opt/sn/etc/socketnaut.conf"
make -C "$top" --no-print-directory -s install DESTDIR="$stage" PREFIX=/opt/sn \
    BUILD="${BUILD:-build}" >/dev/null
tail -n 1 "$stage/opt/sn/etc/socketnaut.conf" | grep -q "edited by the operator" ||
    fail "make install overwrote an existing configuration"

make -C "$top" --no-print-directory -s uninstall DESTDIR="$stage" PREFIX=/opt/sn \
    BUILD="${BUILD:-build}" >/dev/null
left=$(cd "$stage/opt/sn" && find . -type f | sort)
[ "$left" = "./etc/socketnaut.conf" ] || fail "uninstall left: $left"
echo "install: PASS (files, unit paths, agents importable, config kept, uninstall)"
