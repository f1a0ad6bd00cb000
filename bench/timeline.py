#!/usr/bin/env python3
"""Timeline of one burst (bench/run.py's: N concurrent POST /echo of S bytes,
backends that block --delay ms a request), for socketnautd autoscaling and
for HAProxy in front of a fixed pool, to see where the time goes.  A tool,
not a test: it asserts nothing about timing.

Per request, joined on the client's port: when the client connected, when
the proxy accepted it (access log / HAProxy log), when it was given to a
worker, when its response ended at the client.  Per worker connection
(bench-backend's BENCH_BACKEND_TRACE): accepted, first request byte, request
complete, response written, closed.  Per worker (socketnautd's log): started
and ready.  Summaries print; --json FILE keeps every event.

    python3 bench/timeline.py [--systems socketnautd,haproxy] [--rounds 1]
        [--sn-opt KEY=VALUE ...] [--json FILE]
"""
import argparse
import asyncio
import calendar
import json
import os
import re
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: systems under test, helpers)

SN_A = run.SOCKETNAUTD


async def _burst(port, n, size, timeout):
    """run.py's burst client, with a time stamp per step (realtime, s)."""
    base = os.urandom(size + 4096)
    head = (b"POST /echo HTTP/1.1\r\nHost: bench\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % size)
    recs = [dict() for _ in range(n)]

    async def one(i):
        rec = recs[i]
        off = (i * 61) % 4096
        body = base[off:off + size]
        rec["start"] = time.time()
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       limit=1 << 20)
        rec["connected"] = time.time()
        rec["port"] = writer.get_extra_info("sockname")[1]
        try:
            writer.write(head)
            writer.write(body)
            await writer.drain()
            rec["sent"] = time.time()
            rhead = await reader.readuntil(b"\r\n\r\n")
            rec["first"] = time.time()
            m = re.search(rb"Content-Length: (\d+)", rhead)
            if not rhead.startswith(b"HTTP/1.1 200") or not m:
                return "status"
            data = await reader.readexactly(int(m.group(1)))
            rec["end"] = time.time()
            return "ok" if data == body else "mismatch"
        finally:
            writer.close()

    async def guarded(i):
        try:
            return await asyncio.wait_for(one(i), timeout)
        except asyncio.TimeoutError:
            return "timeout"
        except (OSError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as e:
            return type(e).__name__

    t0 = time.time()
    results = await asyncio.gather(*(guarded(i) for i in range(n)))
    wall = time.time() - t0
    for rec, res in zip(recs, results):
        rec["result"] = res
    return t0, wall, recs


def pct(xs, p):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))]


def stamp_s(text):
    """'2026-12-01T08:10:44.123' (local time) -> epoch seconds."""
    sec, ms = text.split(".")
    return time.mktime(time.strptime(sec, "%Y-%m-%dT%H:%M:%S")) + \
        int(ms) / 1000.0


def read_daemon_log(path):
    """Per worker pid: started, ready (epoch s) from socketnautd's log."""
    workers = {}
    pat = re.compile(r"^(\S+) \w+: service \S+: worker (\d+): "
                     r"(started|ready at)")
    with open(path, errors="replace") as f:
        for line in f:
            m = pat.match(line)
            if not m:
                continue
            w = workers.setdefault(int(m.group(2)), {})
            w["started" if m.group(3) == "started" else "ready"] = \
                stamp_s(m.group(1))
    return workers


def read_access_log(path):
    """Per client port: accepted, to_worker, opened, closed (epoch s)."""
    out = {}
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) < 11:
                continue
            end = calendar.timegm(time.strptime(
                p[0][:19], "%Y-%m-%dT%H:%M:%S")) + int(p[0][20:23]) / 1000.0
            dur = int(p[7]) / 1000.0
            acc = end - dur
            queue = int(p[5]) / 1000.0
            conn = int(p[6]) / 1000.0 if p[6] != "-" else None
            port = int(p[2].rsplit(":", 1)[1])
            out[port] = {"accepted": acc, "to_worker": acc + queue,
                         "opened": acc + queue + conn if conn is not None
                         else None, "closed": end, "pid": p[4]}
    return out


def read_haproxy_log(path):
    """Per client port: accepted, to_worker, opened, closed (epoch s)."""
    out = {}
    pat = re.compile(r"^(\d+) (\d+) (\d+) (-?\d+) (-?\d+) (-?\d+) (\S+)$")
    with open(path, errors="replace") as f:
        for line in f:
            m = pat.match(line.strip())
            if not m:
                continue
            acc = int(m.group(2)) + int(m.group(3)) / 1000.0
            tw, tc, tt = (int(m.group(i)) / 1000.0 for i in (4, 5, 6))
            out[int(m.group(1))] = {
                "accepted": acc, "to_worker": acc + max(tw, 0),
                "opened": acc + max(tw, 0) + max(tc, 0),
                "closed": acc + tt, "pid": m.group(7)}
    return out


def read_trace(path):
    """bench-backend's per-connection lines, epoch seconds."""
    conns = []
    if not os.path.exists(path):
        return conns
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) != 7:
                continue
            v = [int(x) / 1e6 if int(x) else None for x in p[1:6]]
            conns.append({"pid": int(p[0]), "accept": v[0], "first": v[1],
                          "request": v[2], "out": v[3], "close": v[4],
                          "nreq": int(p[6])})
    return conns


def worker_gaps(conns):
    """Per worker, the idle time between one response written and the next
    request complete, split where it went: the proxy had not connected yet
    (close -> accept), the first byte (accept -> first byte), the body
    (first byte -> request complete)."""
    byw = {}
    for c in conns:
        if c["request"] is not None:
            byw.setdefault(c["pid"], []).append(c)
    gaps = {"total": [], "to_accept": [], "to_first": [], "body": []}
    for cs in byw.values():
        cs.sort(key=lambda c: c["request"])
        for a, b in zip(cs, cs[1:]):
            done = a["out"] or a["close"]
            if done is None or b["request"] < done:
                continue
            gaps["total"].append(b["request"] - done)
            gaps["to_accept"].append(max(0.0, b["accept"] - done))
            gaps["to_first"].append(b["first"] - max(b["accept"], done))
            gaps["body"].append(b["request"] - max(b["first"], done))
    return byw, gaps


def ramp(workers, t0, at):
    return [sum(1 for w in workers.values()
                if w.get("ready") is not None and w["ready"] - t0 <= t)
            for t in at]


def summarize(name, t0, wall, recs, proxy, conns, workers, cpu):
    rel = (lambda x: None if x is None else x - t0)
    lines = ["## %s: wall %.2f s, %d errors" % (
        name, wall, sum(1 for r in recs if r["result"] != "ok"))]

    def row(label, xs, unit="s"):
        xs = [x for x in xs if x is not None]
        if not xs:
            lines.append("- %s: –" % label)
            return
        if unit == "ms":
            lines.append("- %s: p50 %.0f ms, p90 %.0f ms, max %.0f ms "
                         "(n=%d)" % (label, pct(xs, 50) * 1e3,
                                     pct(xs, 90) * 1e3, max(xs) * 1e3,
                                     len(xs)))
        else:
            lines.append("- %s: p10 %.3f s, p50 %.3f s, p90 %.3f s, max "
                         "%.3f s (n=%d)" % (label, pct(xs, 10), pct(xs, 50),
                                            pct(xs, 90), max(xs), len(xs)))
    row("client connected", [rel(r.get("connected")) for r in recs])
    row("client body sent (drained)", [rel(r.get("sent")) for r in recs])
    j = [(r, proxy.get(r.get("port"))) for r in recs]
    row("proxy accepted", [rel(p["accepted"]) for r, p in j if p])
    # "connected" is stamped when the client's coroutine runs again, after
    # all its connects: the connect call ("start") is the one to compare
    row("accept lag (client's connect call -> proxy accepted)",
        [p["accepted"] - r["start"] for r, p in j
         if p and r.get("start")], "ms")
    row("load generator's connect phase (its last connect call)",
        [max(rel(r["start"]) for r in recs)])
    row("given to a worker", [rel(p["to_worker"]) for r, p in j if p])
    row("queue wait (accepted -> given)",
        [p["to_worker"] - p["accepted"] for r, p in j if p], "ms")
    row("worker connection open", [rel(p["opened"]) for r, p in j
                                   if p and p["opened"]])
    row("worker: request complete (after the body crossed)",
        [rel(c["request"]) for c in conns if c["request"]])
    row("worker: first byte -> request complete (100 kB body in)",
        [c["request"] - c["first"] for c in conns
         if c["request"] and c["first"]], "ms")
    row("worker: accepted -> request complete",
        [c["request"] - c["accept"] for c in conns
         if c["request"] and c["accept"]], "ms")
    row("worker: request complete -> response written",
        [c["out"] - c["request"] for c in conns
         if c["out"] and c["request"]], "ms")
    row("client: first response byte", [rel(r.get("first")) for r in recs])
    row("client: response complete", [rel(r.get("end")) for r in recs])
    row("proxy closed the connection", [rel(p["closed"]) for r, p in j
                                       if p])
    row("client response complete -> proxy closed",
        [p["closed"] - r["end"] for r, p in j if p and r.get("end")], "ms")
    byw, gaps = worker_gaps(conns)
    nreq = sorted(len(cs) for cs in byw.values())
    if nreq:
        lines.append("- requests per worker: %d workers served, min %d, "
                     "median %d, max %d" % (len(nreq), nreq[0],
                                            nreq[len(nreq) // 2], nreq[-1]))
    row("worker idle between requests (response written -> next request "
        "complete)", gaps["total"], "ms")
    row("  of which: response written -> next connection accepted",
        gaps["to_accept"], "ms")
    row("  of which: accepted -> first request byte", gaps["to_first"], "ms")
    row("  of which: first byte -> request complete (body)", gaps["body"],
        "ms")
    busy = sum(c["out"] - c["request"] for c in conns
               if c["out"] and c["request"])
    last = max((c["out"] for c in conns if c["out"]), default=t0)
    if workers:
        at = [0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0]
        lines.append("- ready workers at " + ", ".join(
            "%.2fs: %d" % (t, n) for t, n in zip(at, ramp(workers, t0, at))))
        started = [w["started"] - t0 for w in workers.values()
                   if w.get("started") and w["started"] >= t0]
        readies = [w["ready"] - w["started"] for w in workers.values()
                   if w.get("ready") and w.get("started")
                   and w["started"] >= t0]
        if started:
            lines.append("- %d workers started in the burst, the last at "
                         "%.3f s; start -> ready p50 %.0f ms, max %.0f ms"
                         % (len(started), max(started),
                            pct(readies, 50) * 1e3, max(readies) * 1e3))
        avail = sum(max(0.0, last - max(w.get("ready") or last, t0))
                    for w in workers.values())
    else:
        avail = len(byw) * max(0.0, last - t0)
    if avail > 0:
        lines.append("- worker-seconds in rotation until the last response "
                     "%.1f, of which serving a request (delay + write) %.1f "
                     "(%.0f%%)" % (avail, busy, 100 * busy / avail))
    lines.append("- CPU during the burst: proxy %.2f s, load generator "
                 "%.2f s (system %.2f s; %.2f s waiting for a CPU), "
                 "workers %.2f s; listen queue overflows (whole machine) %s"
                 % (cpu["proxy"], cpu["client"], cpu["client_sys"],
                    cpu["client_runq"], cpu["workers"], cpu["overflows"]))
    return "\n".join(lines)


def one(bench, system, args, rnd):
    trace = os.path.join(bench.tmp, "trace-%s-%d" % (system, rnd))
    os.environ["BENCH_BACKEND_TRACE"] = trace
    alog = os.path.join(bench.tmp, "access-%s-%d.log" % (system, rnd))
    # socketnautd-b: the same, with the --b-binary build (A/B of a change)
    run.SOCKETNAUTD = args.b_binary if system.endswith("-b") else SN_A
    if system.startswith("socketnautd"):
        opts = {"access_log": '"%s"' % alog}
        opts.update(kv.split("=", 1) for kv in args.sn_opt)
        # socketnautd-fixed: worker_count = --pool, started in advance
        h = bench.start("socketnautd", pool=args.pool, delay=args.delay,
                        autoscale=None if "-fixed" in system
                        else (args.min, args.max), options=opts)
    else:
        bench.haproxy_log = True
        h = bench.start("haproxy", pool=args.pool, delay=args.delay)
    try:
        time.sleep(0.3)
        ppid = h["pid"]
        sn = system.startswith("socketnautd")
        kids = run.descendants(ppid) if sn else \
            [p.pid for p in h["backends"]]
        wcpu0 = sum(run.cpu_ns(k) or 0 for k in kids)
        pcpu0 = run.cpu_ns(ppid) or 0
        ccpu0 = resource.getrusage(resource.RUSAGE_SELF)
        ov0 = run.listen_overflows()
        sched0 = open("/proc/self/schedstat").read().split()
        t0, wall, recs = asyncio.run(_burst(h["port"], args.n, args.size, 60))
        sched1 = open("/proc/self/schedstat").read().split()
        ccpu1 = resource.getrusage(resource.RUSAGE_SELF)
        ov1 = run.listen_overflows()
        pcpu = ((run.cpu_ns(ppid) or 0) - pcpu0) / 1e9
        kids = run.descendants(ppid) if sn else kids
        wcpu = (sum(run.cpu_ns(k) or 0 for k in kids) - wcpu0) / 1e9
        time.sleep(0.3)  # the access log's 100 ms flush timer
    finally:
        logpath = h["procs"][-1].bench_log
        bench.stop(h)
    cpu = {"proxy": pcpu, "workers": wcpu,
           "overflows": ov1 - ov0 if ov0 is not None and ov1 is not None
           else None,
           "client_runq": (int(sched1[1]) - int(sched0[1])) / 1e9,
           "client_sys": ccpu1.ru_stime - ccpu0.ru_stime,
           "client": (ccpu1.ru_utime + ccpu1.ru_stime) -
           (ccpu0.ru_utime + ccpu0.ru_stime)}
    if sn:
        proxy = read_access_log(alog)
        workers = read_daemon_log(logpath)
    else:
        proxy = read_haproxy_log(logpath)
        workers = {}
    conns = read_trace(trace)
    # the readiness probes and the bench's wait_http are no requests
    conns = [c for c in conns if c["request"] and c["request"] >= t0]
    label = system if system in ("socketnautd", "socketnautd-b") else \
        "%s-%d" % (system, args.pool)
    text = summarize("%s (round %d)" % (label, rnd + 1), t0, wall, recs,
                     proxy, conns, workers, cpu)
    dump = {"system": label, "t0": t0, "wall": wall, "requests": recs,
            "proxy": {str(k): v for k, v in proxy.items()}, "conns": conns,
            "workers": {str(k): v for k, v in workers.items()}, "cpu": cpu}
    return text, dump


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--systems", default="socketnautd,haproxy")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=100 * 1000)
    ap.add_argument("--delay", type=int, default=100)
    ap.add_argument("--min", type=int, default=10)
    ap.add_argument("--max", type=int, default=100)
    ap.add_argument("--pool", type=int, default=100,
                    help="HAProxy's fixed pool of backends")
    ap.add_argument("--sn-opt", action="append", default=[],
                    metavar="KEY=VALUE", help="extra socketnautd service "
                    "setting")
    ap.add_argument("--json", help="write every event here")
    ap.add_argument("--b-binary", metavar="PATH", help="socketnautd binary "
                    "of the systems named socketnautd-b, socketnautd-fixed-b")
    args = ap.parse_args()
    rargs = run.argparse.Namespace(
        idle_conns=0, ref_bufsize=0, socket_activation=False, sn_conf=[],
        sn_global=[], sn_service_b=[])
    import tempfile
    import shutil
    run.build_backend()
    run.raise_nofile(65536)
    tmp = tempfile.mkdtemp(prefix="sntimeline-")
    bench = run.Bench(rargs, tmp)
    dumps = []
    try:
        for rnd in range(args.rounds):
            systems = args.systems.split(",")
            if rnd % 2:
                systems.reverse()
            for s in systems:
                print("load average %s" % run.loadavg(), flush=True)
                text, dump = one(bench, s, args, rnd)
                print(text, flush=True)
                dumps.append(dump)
    finally:
        bench.procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dumps, f)


if __name__ == "__main__":
    main()
