#!/bin/sh
# End to end test of libsocketnaut with the real daemon: socketnautd runs
# the c-logger example (examples/c-logger/c-logger.conf, on a free port)
# and a copy of it with backend "agent" (the worker listens on port 0 and
# reports its port); a request from curl on loopback must be logged by the
# daemon as "service NAME: worker PID: GET /... from <curl's address:port>"
# with PID one of its workers, and answered with the same address; after
# SIGHUP the old workers must drain on request and exit 0.  Every wait is
# bounded; whatever is started is stopped.
#
# usage: sh tests/lib/e2e.sh [BUILD_DIR]     (default build)
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$root/${1:-build}" && pwd)
daemon=$build/socketnautd
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sn-lib-e2e.XXXXXX")
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
	echo "e2e: FAIL: $*" >&2
	echo "---- daemon log" >&2
	cat "$tmp/log" >&2 || true
	exit 1
}

free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# wait_for SECONDS COMMAND...: run COMMAND every 0.1 s until it succeeds.
wait_for() {
	n=$(($1 * 10))
	shift
	while [ "$n" -gt 0 ]; do
		if "$@"; then
			return 0
		fi
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}

in_log() {
	grep -Eq "$1" "$tmp/log"
}

port=$(free_port)
port2=$(free_port)
while [ "$port2" = "$port" ]; do
	port2=$(free_port)
done
# IPv6 loopback too, where this host has it.
listen2="\"127.0.0.1:$port2\""
v6=
if python3 -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::1", 0))' \
    2>/dev/null; then
	listen2="$listen2, \"[::1]:$port2\""
	v6=1
fi
conf=$tmp/c-logger.conf
{
	echo "runtime_dir = \"$tmp/run\""
	echo "kill_timeout = 3s"
	sed -e "s/127\.0\.0\.1:8090/127.0.0.1:$port/" \
	    "$root/examples/c-logger/c-logger.conf"
	cat <<EOF
service "c-logger-agent" {
    listen = { $listen2 }
    command = "socketnaut-c-logger"
    backend = "agent"
    worker_count = 1
    ready_timeout = 5s
}
EOF
} >"$conf"
grep -q "127.0.0.1:$port\"" "$conf" || fail "the example config has no 127.0.0.1:8090"

PATH="$build:$PATH" "$daemon" -d -c "$conf" 2>"$tmp/log" &
pid=$!

# request SERVICE PORT [HOST]: one request from curl; its log line and
# answer must carry curl's own address and port.
request() {
	svc=$1
	p=$2
	host=${3:-127.0.0.1}
	wait_for 10 in_log "service $svc: worker [0-9]+: ready" ||
	    fail "$svc: no worker became ready"
	case $host in
	*:*) url="http://[$host]:$p"; listener="[$host]:$p"; fmt='[%{local_ip}]' ;;
	*) url="http://$host:$p"; listener="$host:$p"; fmt='%{local_ip}' ;;
	esac
	out=$(curl -sS --max-time 5 -w "CLIENT=$fmt:%{local_port}\\n" \
	    "$url/hello?x=1") || fail "$svc: curl failed"
	client=$(echo "$out" | sed -n 's/^CLIENT=//p')
	case $client in
	*:[0-9]*) ;;
	*) fail "$svc: curl reported no local address ($out)" ;;
	esac
	echo "$out" | grep -qxF "your address: $client" ||
	    fail "$svc: the answer does not name $client: $out"
	echo "$out" | grep -qxF "listener: $listener" ||
	    fail "$svc: the answer does not name the listener: $out"
	qclient=$(echo "$client" | sed 's/[].[]/\\&/g')
	qlistener=$(echo "$listener" | sed 's/[].[]/\\&/g')
	line="service $svc: worker [0-9]+: GET /hello\\?x=1 from $qclient via $qlistener\$"
	wait_for 5 in_log "$line" || fail "$svc: no log line for $client"
	wpid=$(grep -E "$line" "$tmp/log" | sed -n 's/.*worker \([0-9]*\): GET.*/\1/p' |
	    head -n 1)
	in_log "service $svc: worker $wpid: started" ||
	    fail "$svc: $wpid is not a worker the daemon started"
	echo "$out" | grep -qx "worker pid: $wpid" ||
	    fail "$svc: the answer comes from another pid than the log line"
	ppid=$(awk '{ print $4 }' "/proc/$wpid/stat" 2>/dev/null || echo none)
	[ "$ppid" = "$pid" ] || fail "$svc: worker $wpid is not the daemon's child"
	echo "e2e: $svc: worker $wpid logged GET /hello?x=1 from $client"
}

request c-logger "$port"
request c-logger-agent "$port2"
[ -z "$v6" ] || request c-logger-agent "$port2" ::1

# Concurrent clients from both families: each must get its own address.
pids=
for i in 1 2 3 4; do
	(request c-logger-agent "$port2" >/dev/null) &
	pids="$pids $!"
	if [ -n "$v6" ]; then
		(request c-logger-agent "$port2" ::1 >/dev/null) &
		pids="$pids $!"
	fi
done
for p in $pids; do
	wait "$p" || fail "a concurrent request got the wrong address"
done
echo "e2e: c-logger-agent: concurrent clients from 127.0.0.1${v6:+ and ::1} each got their own address"

# Reload: a new generation starts, the old workers are sent DRAIN, answer
# DRAINED and exit 0.
old=$(sed -n 's/.*service c-logger: worker \([0-9]*\): started.*/\1/p' "$tmp/log")
kill -HUP "$pid"
for w in $old; do
	wait_for 15 in_log "service c-logger: worker $w: drained\$" ||
	    fail "worker $w did not drain"
	wait_for 10 in_log "service c-logger: worker $w: exited with status 0" ||
	    fail "worker $w did not exit 0 after draining"
done
echo "e2e: c-logger: old workers $(echo $old) drained and exited 0 on reload"
request c-logger "$port"

kill -TERM "$pid"
n=100
while kill -0 "$pid" 2>/dev/null && [ "$n" -gt 0 ]; do
	sleep 0.1
	n=$((n - 1))
done
if kill -0 "$pid" 2>/dev/null; then
	fail "the daemon did not stop within 10 s of SIGTERM"
fi
status=0
wait "$pid" || status=$?
pid=
[ "$status" -eq 0 ] || fail "the daemon exited with status $status"
if grep -q "control channel: " "$tmp/log"; then
	fail "the daemon closed a control channel"
fi
if grep -Eq "Sanitizer|runtime error:" "$tmp/log"; then
	fail "a sanitizer reported an error"
fi
echo "e2e: PASS"
