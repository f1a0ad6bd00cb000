"""The TLS scenario of bench/run.py (--only tls, opt-in): socketnautd
terminating TLS (a tls { } section) beside HAProxy (bind ... ssl, mode tcp)
and nginx (stream, listen ... ssl), with the same certificate and the same
bench-backend processes on Unix sockets behind each, once with an ECDSA
P-256 certificate and once with an RSA 2048 one.  Per system and round:

  full       new-connection handshakes/s, one GET each (openssl s_time -new,
             --tls-clients processes at once)
  resumed    the same with the session resumed (openssl s_time -reuse)
  ka         keep-alive requests/s over TLS (wrk https://)
  bulk       1 MiB responses over TLS, bytes/s (wrk https://)
  idle       proxy memory per idle TLS connection (RSS before and after
             --tls-idle connections that made one request each)

Sessions: tickets and a session cache on every system (their defaults, and
socketnautd's).  All three negotiate TLS 1.3: nginx 1.22 (Debian 12) leaves
it out of its default ssl_protocols (1.23.4 added it), and a TLS 1.2 resumed
handshake skips the key exchange that TLS 1.3 makes, so nginx is told.  Writes bench/RESULTS-tls.md unless --results.  The lead
runs the real measurement on a quiet machine; a short run checks it works.
"""

import os
import re
import socket
import ssl
import subprocess
import time

SYSTEMS = ["socketnautd", "haproxy", "nginx"]
KEYS = ["full", "resumed", "ka", "bulk", "idle"]
TITLE = {"full": "full handshakes/s (↑)", "resumed": "resumed handshakes/s (↑)",
         "ka": "keep-alive req/s over TLS (↑)", "bulk": "1 MiB bulk over TLS (↑)",
         "idle": "memory per idle TLS connection (↓)"}


def make_certs(d, kind):
    """ca.pem, KIND.pem (chain), KIND.key and KIND.combined (HAProxy's crt)."""
    if not os.path.exists(os.path.join(d, "ca.pem")):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
                        "-out", "ca.pem", "-days", "30", "-subj", "/CN=bench CA"],
                       cwd=d, check=True, capture_output=True, timeout=60)
    key = (["-newkey", "rsa:2048"] if kind == "rsa" else
           ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
    subprocess.run(["openssl", "req"] + key + ["-nodes", "-keyout", kind + ".key",
                   "-out", kind + ".csr", "-subj", "/CN=localhost"],
                   cwd=d, check=True, capture_output=True, timeout=60)
    with open(os.path.join(d, kind + ".ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    subprocess.run(["openssl", "x509", "-req", "-in", kind + ".csr", "-CA", "ca.pem",
                    "-CAkey", "ca.key", "-CAcreateserial", "-out", kind + ".pem",
                    "-days", "30", "-extfile", kind + ".ext"],
                   cwd=d, check=True, capture_output=True, timeout=60)
    with open(os.path.join(d, kind + ".combined"), "w") as out:
        for part in (kind + ".pem", kind + ".key"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())
    return {"ca": os.path.join(d, "ca.pem"), "cert": os.path.join(d, kind + ".pem"),
            "key": os.path.join(d, kind + ".key"),
            "combined": os.path.join(d, kind + ".combined")}


def start(bench, R, target, certs, pool=2):
    """One system terminating TLS in front of `pool` bench-backends."""
    d = bench.newdir("tls-" + target)
    port = R.free_port()
    h = {"procs": [], "dir": d, "notify": None, "target": target, "backends": [],
         "port": port}
    try:
        if target == "socketnautd":
            lines = ['tls {',
                     '        certificate = { "%s" }' % certs["cert"],
                     '        key = { "%s" }' % certs["key"],
                     '    }']
            saved = bench.args.sn_conf
            bench.args.sn_conf = saved + lines
            try:
                start_sn(bench, R, h, d, port, pool)
            finally:
                bench.args.sn_conf = saved
        else:
            bprocs, paths = bench.backends_unix(d, pool)
            h["procs"] = bprocs
            h["backends"] = list(bprocs)
            if target == "haproxy":
                start_haproxy(bench, R, h, d, port, paths, certs)
            else:
                start_nginx(bench, R, h, d, port, paths, certs)
        wait_tls(port, certs["ca"], h)
    except BaseException:
        bench.stop(h)
        raise
    return h


def start_sn(bench, R, h, d, port, pool):
    # run.py's own start-up, whose readiness check speaks plain HTTP:
    # wait for READY=1 and the worker instead.
    real_wait = R.wait_http
    R.wait_http = lambda *a, **k: None
    try:
        bench.start_socketnautd(h, d, port, pool, 0, None)
    finally:
        R.wait_http = real_wait


def start_haproxy(bench, R, h, d, port, paths, certs):
    servers = "\n".join("    server s%d unix@%s" % (i, p) for i, p in enumerate(paths))
    maxconn = max(1000, min(20000, (bench.nofile - 200) // 2))
    conf = os.path.join(d, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write("""# written by bench/tlsbench.py
global
    nbthread 1
    maxconn %d

defaults
    mode tcp
    timeout connect 5s
    timeout client 5m
    timeout server 5m
    maxconn %d

listen bench
    bind 127.0.0.1:%d ssl crt %s
    balance leastconn
%s
""" % (maxconn, maxconn, port, certs["combined"], servers))
    p = bench.procs.start("haproxy", ["haproxy", "-f", conf, "-db"])
    h["procs"].append(p)
    h["pid"] = p.pid


def start_nginx(bench, R, h, d, port, paths, certs):
    servers = "\n".join("        server unix:%s;" % p for p in paths)
    load = "load_module %s;\n" % bench.nginx_module if bench.nginx_module else ""
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""# written by bench/tlsbench.py
%s%sworker_processes 1;
pid %s/nginx.pid;
error_log %s/nginx-error.log warn;
events {
    worker_connections %d;
}
stream {
    upstream backends {
        least_conn;
%s
    }
    server {
        listen 127.0.0.1:%d ssl;
        ssl_certificate %s;
        ssl_certificate_key %s;
        ssl_session_cache shared:SSL:10m;
        ssl_protocols TLSv1.2 TLSv1.3;
        proxy_pass backends;
        proxy_timeout 5m;
    }
}
""" % (load, user, d, d, max(1024, 2 * args_idle(bench)), servers, port, certs["cert"],
       certs["key"]))
    p = bench.procs.start("nginx", ["nginx", "-e", d + "/nginx-error.log", "-p", d,
                                    "-c", conf, "-g", "daemon off;"])
    h["procs"].append(p)
    deadline = time.monotonic() + 10
    h["pid"] = None
    while h["pid"] is None and time.monotonic() < deadline:
        for c in R.descendants(p.pid):
            try:
                with open("/proc/%d/cmdline" % c, "rb") as f:
                    if b"worker process" in f.read():
                        h["pid"] = c
            except OSError:
                pass
        time.sleep(0.05)
    if h["pid"] is None:
        raise R.BenchError("nginx: no worker process")


def args_idle(bench):
    return bench.args.tls_idle + 2000


def https_get(port, ctx, timeout=5.0):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def wait_tls(port, ca, h, timeout=30.0):
    ctx = ssl.create_default_context(cafile=ca)
    deadline = time.monotonic() + timeout
    err = None
    while time.monotonic() < deadline:
        try:
            if https_get(port, ctx).startswith(b"HTTP/1.1 200"):
                return
        except (OSError, ssl.SSLError) as e:
            err = e
        time.sleep(0.1)
    raise RuntimeError("%s: no HTTPS answer on %d: %r" % (h["target"], port, err))


def s_time(port, ca, reuse, secs, clients):
    """Connections/s of `clients` openssl s_time processes at once (GET / each)."""
    argv = ["openssl", "s_time", "-connect", "127.0.0.1:%d" % port, "-CAfile", ca,
            "-www", "/", "-time", str(secs), "-reuse" if reuse else "-new"]
    t0 = time.monotonic()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True) for _ in range(clients)]
    total = 0
    for p in procs:
        out, _ = p.communicate(timeout=secs + 60)
        m = re.findall(r"(\d+) connections in [\d.]+ real seconds", out) or \
            re.findall(r"(\d+) connections in \d+ real seconds", out)
        if p.returncode != 0 or not m:
            raise RuntimeError("openssl s_time failed:\n" + out[-500:])
        total += int(m[-1])
    return total / (time.monotonic() - t0)


def idle_memory(port, pid, ca, n, R):
    """Bytes of proxy RSS per idle TLS connection that made one request."""
    ctx = ssl.create_default_context(cafile=ca)
    conns = []
    before = R.rss_kib(pid)
    try:
        for _ in range(n):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            s.recv(65536)
            conns.append(s)
        time.sleep(0.3)
        after = R.rss_kib(pid)
    finally:
        for s in conns:
            s.close()
    return (after - before) * 1024.0 / n


def measure(bench, R, h, certs, args, add, kind):
    port, pid = h["port"], h["pid"]
    t = h["target"]
    ca = certs["ca"]
    secs = args.seconds
    idle = idle_memory(port, pid, ca, args.tls_idle, R)
    add(kind, "idle", t, idle)
    c0 = R.cpu_ns(pid)
    full = s_time(port, ca, False, secs, args.tls_clients)
    add(kind, "full", t, full)
    resumed = s_time(port, ca, True, secs, args.tls_clients)
    add(kind, "resumed", t, resumed)
    ka = R.run_wrk(args, port, "/", args.conns, args.ka_seconds, scheme="https")
    add(kind, "ka", t, ka["rps"])
    bulk = R.run_wrk(args, port, "/bytes?n=%d" % R.BULK_SIZE, args.bulk_conns,
                     args.seconds, scheme="https")
    add(kind, "bulk", t, bulk["bps"])
    cpu = (R.cpu_ns(pid) - c0) / 1e9
    R.log("  %-5s %-11s full %.0f/s, resumed %.0f/s, ka %.0f req/s, bulk %.2f GB/s, "
          "idle %.0f B/conn, proxy CPU %.1f s" % (kind, t, full, resumed, ka["rps"],
                                                 bulk["bps"] / 1e9, idle, cpu))
    errs = ka["errors"] + ka["non2xx"] + bulk["errors"] + bulk["non2xx"]
    if errs:
        R.log("  %s %s: %d wrk errors" % (kind, t, errs))


def fmt(key, v):
    if key == "bulk":
        return "%.2f GB/s" % (v / 1e9)
    if key == "idle":
        return "%.1f KiB" % (v / 1024.0)
    return "%.0f" % v


def table(res, R):
    rows = []
    for kind in sorted(res):
        for key in KEYS:
            vals = {t: R.med(res[kind][key][t]) for t in SYSTEMS if res[kind][key].get(t)}
            if "socketnautd" not in vals:
                continue
            refs = [vals[t] for t in ("haproxy", "nginx") if t in vals]
            best = (min(refs) if key == "idle" else max(refs)) if refs else None
            ratio = "-"
            if best:
                r = (best / vals["socketnautd"] if key == "idle"
                     else vals["socketnautd"] / best)
                ratio = "%.2fx" % r
            rows.append(["%s: %s" % (kind, TITLE[key])] +
                        [fmt(key, vals[t]) if t in vals else "-" for t in SYSTEMS] +
                        [ratio])
    return R.md_table(["scenario", "socketnautd", "HAProxy", "nginx",
                       "socketnautd / better of the two"], rows)


def run(bench, args, R):
    """Every round visits each system for each certificate kind."""
    d = bench.newdir("tls-certs")
    res = {}

    def add(kind, key, t, v):
        res.setdefault(kind, {}).setdefault(key, {}).setdefault(t, []).append(v)

    kinds = [k for k in args.tls_certs.split(",") if k]
    for kind in kinds:
        if kind not in ("ecdsa", "rsa"):
            raise R.BenchError("--tls-certs: ecdsa and/or rsa, not %r" % kind)
    certs = {kind: make_certs(d, kind) for kind in kinds}
    for rnd in range(args.rounds):
        order = SYSTEMS[rnd % 3:] + SYSTEMS[:rnd % 3]
        R.log("tls round %d/%d: %s (load average %s)" % (rnd + 1, args.rounds,
                                                        ", ".join(order), R.loadavg()))
        for kind in kinds:
            for t in order:
                h = start(bench, R, t, certs[kind])
                try:
                    measure(bench, R, h, certs[kind], args, add, kind)
                finally:
                    bench.stop(h)
    text = ("# TLS termination: socketnautd, HAProxy, nginx\n\n"
            "Written by `bench/run.py --only tls` (bench/tlsbench.py): medians of %d "
            "round(s); %d s per measurement (%d s keep-alive), %d wrk connections "
            "(%d bulk), %d s_time clients, %d idle connections; 2 bench-backends "
            "on Unix sockets behind each.  OpenSSL: %s.  Machine: %s.\n\n%s\n"
            % (args.rounds, args.seconds, args.ka_seconds, args.conns, args.bulk_conns,
               args.tls_clients, args.tls_idle, ssl.OPENSSL_VERSION, R.machine(),
               table(res, R)))
    results = args.results or os.path.join(R.BENCH, "RESULTS-tls.md")
    with open(results, "w") as f:
        f.write(text)
    R.log("wrote " + results)
    return res
