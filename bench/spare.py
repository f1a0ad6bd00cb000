#!/usr/bin/env python3
"""A burst after a quiet period, with and without spare_workers.

usage: spare.py [--idle 60] [--rounds 3] [--kind c|node] [--clients 10]

socketnautd serves workers that block DELAY ms per request (bench-backend
--delay, or bench/node-worker.mjs, which busy-waits), min_workers = 1,
max_workers = 30.  After the pool has been quiet for --idle seconds, CLIENTS
requests arrive at once.  Rounds alternate spare_workers = 0 and = CLIENTS and
report, per setting, the median over rounds of the slowest and the median of
the CLIENTS responses, the processes started between the burst's first
request and its last response (spares being replaced count too), and, with
Node workers (which trace each request with their pid), how many requests of
the burst a worker started during it served: a start on the critical path.
Starts are taken from the kernel (each descendant's start time), not the log.
"""

import argparse
import asyncio
import importlib.util
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("benchrun",
                                              os.path.join(HERE, "run.py"))
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)


async def _get(port, timeout):
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    if not data.startswith(b"HTTP/1.1 200"):
        raise OSError("bad response %r" % data[:40])
    return time.monotonic() - t0


async def _burst(port, n, timeout):
    return await asyncio.gather(*(_get(port, timeout) for _ in range(n)),
                                return_exceptions=True)


def worker_starts(master, hz, boot):
    """{pid: start time (monotonic seconds)} of master's descendants."""
    out = {}
    for pid in run.descendants(master):
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[pid] = boot + int(fields[19]) / hz
        except (OSError, IndexError, ValueError):
            pass
    return out


def served_by_new(h, before, t0):
    """Requests of the burst that a worker started after t0 served (Node
    workers trace each request with their pid); None for C workers."""
    path = os.path.join(h["dir"], "trace.log")
    if not os.path.exists(path):
        return None
    wall0 = time.time() - (time.monotonic() - t0)
    n = 0
    with open(path) as f:
        for line in f:
            pid, start, _ = line.split()
            if int(start) / 1000.0 >= wall0 - 0.05 and int(pid) not in before:
                n += 1
    return n


def boot_offset():
    """time.monotonic() of boot, to compare with /proc start times."""
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    return time.monotonic() - up


def one(bench, args, spare):
    opts = {"spare_workers": spare, "workers_checking_interval": "1s"}
    h = bench.start("socketnautd", delay=args.delay, kind=args.kind,
                    autoscale=(1, args.max), options=opts)
    try:
        # settle: the pool reaches its resting size, then stays quiet
        want = 1 + spare
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(worker_starts(h["pid"], HZ, BOOT)) >= want:
                break
            time.sleep(0.2)
        time.sleep(args.idle)
        before = worker_starts(h["pid"], HZ, BOOT)
        t0 = time.monotonic()
        res = asyncio.run(_burst(h["port"], args.clients, 60))
        t1 = time.monotonic()
        errors = [r for r in res if isinstance(r, BaseException)]
        after = worker_starts(h["pid"], HZ, BOOT)
        # start times have the clock tick's resolution: allow one tick
        started = [p for p, t in after.items()
                   if p not in before and t <= t1 + 1.0 / HZ]
        lat = sorted(r for r in res if not isinstance(r, BaseException))
        return {"by_new": served_by_new(h, before, t0),"slowest": lat[-1] if lat else None,
                "median": statistics.median(lat) if lat else None,
                "wall": t1 - t0, "started": len(started),
                "before": len(before), "errors": len(errors)}
    finally:
        bench.stop(h)


HZ = os.sysconf("SC_CLK_TCK")
BOOT = boot_offset()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--idle", type=float, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kind", choices=["c", "node"], default="c")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--delay", type=int, default=100)
    ap.add_argument("--max", type=int, default=30)
    args = ap.parse_args()
    args.sn_conf, args.socket_activation = [], False
    run.build_backend()
    rows = {0: [], args.clients: []}
    with tempfile.TemporaryDirectory(prefix="sn-spare-") as tmp:
        bench = run.Bench(args, tmp)
        try:
            for rnd in range(args.rounds):
                for spare in rows:
                    r = one(bench, args, spare)
                    rows[spare].append(r)
                    print("round %d spare_workers=%d: slowest %.3f s, "
                          "median %.3f s, %d processes before, %d started "
                          "during the burst, %s requests served by those, "
                          "%d errors" % (
                              rnd + 1, spare, r["slowest"] or -1,
                              r["median"] or -1, r["before"], r["started"],
                              r["by_new"], r["errors"]), flush=True)
        finally:
            bench.procs.stop_all()
    print("\n%d clients at once after %.0f s idle, %s workers blocking %d ms, "
          "medians of %d rounds" % (args.clients, args.idle, args.kind,
                                    args.delay, args.rounds))
    print("| spare_workers | slowest response | median response | "
          "workers started during the burst | requests they served | errors |")
    print("|---|---|---|---|---|---|")
    for spare, rs in rows.items():
        print("| %d | %.3f s | %.3f s | %s | %s | %d |" % (
            spare, statistics.median(r["slowest"] for r in rs),
            statistics.median(r["median"] for r in rs),
            "/".join(str(r["started"]) for r in rs),
            "/".join(str(r["by_new"]) for r in rs),
            sum(r["errors"] for r in rs)))


if __name__ == "__main__":
    sys.exit(main())
