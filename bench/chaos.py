#!/usr/bin/env python3
"""Kill workers under load and count what clients lose (issue 7's measurement).

usage: bench/chaos.py [--seconds 20] [--every 0.5] [--connections 32]

Runs socketnautd (build/socketnautd, min_workers 2, max_workers 4, the bundled example worker
on its Unix socket) under `wrk -cN` twice, keep-alive and `Connection: close`, and SIGKILLs one
worker every --every seconds.  Before each kill it counts the connections the worker holds
(its socket descriptors other than its listener and control channel): each of those can have
at most one request in flight (those still in its accept queue included), so their sum bounds the requests the kills may cost.  It
reports wrk's failures against that bound and how long the pool took to be back at
min_workers after each kill (median and worst).  Needs wrk (Debian package wrk)."""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("BUILD", "build"))
DAEMON = os.path.join(BUILD, "socketnautd")
HELLO = os.path.join(BUILD, "socketnaut-hello")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid):
    kids = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
            kids += [int(x) for x in f.read().split()]
    return kids


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def connections(pid):
    """Client connections a worker holds: its socket descriptors less its listener and
    control channel, plus those waiting in its listener's accept queue (ss's Recv-Q)."""
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return 0
    backlog = 0
    out = subprocess.run(["ss", "-xln"], capture_output=True, text=True).stdout
    for line in out.splitlines()[1:]:
        f = line.split()
        if len(f) >= 6 and f[5] in inodes:
            backlog += int(f[2])
    return max(len(inodes) - 2, 0) + backlog


def run(args, close):
    tmp = tempfile.mkdtemp(prefix="sn-chaos-")
    port = free_port()
    conf = os.path.join(tmp, "chaos.conf")
    with open(conf, "w") as f:
        f.write('runtime_dir = "%s/run"\nlog_level = notice\n'
                'service "web" {\n  listen = { "127.0.0.1:%d" }\n'
                '  command = "%s --socket {socket}"\n  min_workers = 2\n  max_workers = 4\n}\n'
                % (tmp, port, HELLO))
    log = open(os.path.join(tmp, "daemon.log"), "wb")
    daemon = subprocess.Popen([DAEMON, "-c", conf], stdout=log, stderr=log)
    try:
        for _ in range(200):
            if len([k for k in children(daemon.pid) if alive(k)]) >= 2:
                break
            time.sleep(0.05)
        time.sleep(0.5)
        wrk = ["wrk", "-t2", "-c%d" % args.connections, "-d%ds" % args.seconds,
               "http://127.0.0.1:%d/" % port]
        if close:
            wrk[1:1] = ["-H", "Connection: close"]
        out = []
        t = threading.Thread(target=lambda: out.append(
            subprocess.run(wrk, capture_output=True, text=True).stdout))
        t.start()
        time.sleep(1)
        kills, bound, recovery = 0, 0, []
        end = time.monotonic() + args.seconds - 2
        while time.monotonic() < end:
            time.sleep(args.every)
            pids = [k for k in children(daemon.pid) if alive(k)]
            if not pids:
                continue
            victim = pids[kills % len(pids)]
            bound += connections(victim)
            os.kill(victim, signal.SIGKILL)
            kills += 1
            t0 = time.monotonic()
            for _ in range(500):
                live = [k for k in children(daemon.pid) if alive(k) and k != victim]
                if len(live) >= 2:
                    break
                time.sleep(0.002)
            recovery.append((time.monotonic() - t0) * 1000)
        t.join(args.seconds + 30)
        text = out[0] if out else ""
        reqs = int(re.search(r"(\d+) requests in", text).group(1))
        errs = sum(int(x) for x in re.findall(
            r"(?:connect|read|write|timeout) (\d+)", text))
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        failed = errs + (int(non2xx.group(1)) if non2xx else 0)
        return {"mode": "close" if close else "keep-alive", "requests": reqs,
                "failed": failed, "kills": kills, "bound": bound,
                "recovery_med": statistics.median(recovery) if recovery else 0,
                "recovery_max": max(recovery) if recovery else 0}
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--every", type=float, default=0.5)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("chaos: wrk is needed (apt-get install wrk)")
    print("| mode | requests | failed | kills | conns on killed workers | "
          "back to min, median | worst |")
    print("|---|---|---|---|---|---|---|")
    for close in (False, True):
        r = run(args, close)
        print("| %(mode)s | %(requests)d | %(failed)d | %(kills)d | %(bound)d | "
              "%(recovery_med).0f ms | %(recovery_max).0f ms |" % r)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
