#!/usr/bin/env python3
"""make bench: socketnautd against HAProxy and nginx (stream), same backends.

Everything runs on this machine over 127.0.0.1 and Unix sockets in a private
temporary directory.  See bench/README for what each scenario measures.
Python 3 standard library only; needs wrk, haproxy, nginx with the stream
module (installed with apt-get when missing) and a C compiler.
"""

import argparse
import asyncio
import datetime
import os
import platform
import re
import resource
import selectors
import shlex
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
BENCH = os.path.join(ROOT, "bench")
BUILD = os.path.join(ROOT, "build")
SOCKETNAUTD = os.path.join(BUILD, "socketnautd")
BACKEND = os.path.join(BUILD, "bench-backend")
BACKEND_SRC = os.path.join(BENCH, "backend.c")
NODE_WORKER = os.path.join(BENCH, "node-worker.mjs")
SUMMARY_LUA = os.path.join(BENCH, "summary.lua")
RESULTS = os.path.join(BENCH, "RESULTS.md")

TARGETS = ["socketnautd", "handoff", "haproxy", "nginx", "direct"]
PROXIES = ["socketnautd", "handoff", "haproxy", "nginx"]
LABEL = {"socketnautd": "socketnautd", "handoff": "socketnautd (handoff)",
         "haproxy": "HAProxy", "nginx": "nginx", "direct": "direct",
         "socketnautd-b": "socketnautd + B settings"}
AB_SYSTEMS = ["socketnautd", "socketnautd-b"]
BULK_SIZE = 1 << 20
ALL_SCEN = ["ka", "close", "bulk", "idle", "burst", "burst-node", "tls"]
# burst-node is opt-in (--only burst-node): it starts 5 systems a round, two
# of them with 100 Node processes each, about 3 minutes a round on 2 cores
DEFAULT_SCEN = ["ka", "close", "bulk", "idle", "burst"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# processes

def proc_table():
    """{pid: ppid} of every process, from /proc."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                data = f.read()
        except OSError:
            continue
        # comm may hold spaces and parentheses: split after the last ')'
        rest = data[data.rfind(b")") + 2:].split()
        if len(rest) >= 2:
            table[int(name)] = int(rest[1])
    return table


def descendants(pid):
    table = proc_table()
    children = {}
    for p, pp in table.items():
        children.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    for _ in range(100000):
        if not todo:
            break
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2:][:1] != b"Z"


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError("no VmRSS for pid %d" % pid)


def cpu_ns(pid):
    """CPU time used so far by every thread of pid, in nanoseconds."""
    total = 0
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                total += int(f.read().split()[0])
        return total
    except (OSError, ValueError, IndexError):
        pass
    with open("/proc/%d/stat" % pid, "rb") as f:
        data = f.read()
    rest = data[data.rfind(b")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) * 10**9 // \
        os.sysconf("SC_CLK_TCK")


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


class Procs:
    """Every process the bench starts, each in a session of its own, so
    Ctrl-C in the terminal reaches only us and we stop them in order."""

    def __init__(self, logdir):
        self.logdir = logdir
        self.live = []          # [Popen, name, known descendant pids]
        self.seq = 0

    def start(self, name, argv, env=None, stdout=None):
        self.seq += 1
        logpath = os.path.join(self.logdir, "%02d-%s.log" % (self.seq, name))
        logf = open(logpath, "wb")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                 stdout=stdout if stdout else logf,
                                 stderr=logf, env=env,
                                 start_new_session=True, close_fds=True)
        finally:
            logf.close()
        p.bench_name = name
        p.bench_log = logpath
        self.live.append([p, name, set()])
        return p

    def note_children(self, p):
        for entry in self.live:
            if entry[0] is p:
                entry[2].update(descendants(p.pid))

    def stop(self, p, sig=signal.SIGTERM, grace=5.0):
        entry = None
        for e in self.live:
            if e[0] is p:
                entry = e
        if entry is None:
            return
        entry[2].update(descendants(p.pid))
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # whatever is left: the leader's group, then each descendant seen
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if p.poll() is None:
            try:
                p.kill()
            except ProcessLookupError:
                pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log("warning: %s (pid %d) did not exit" % (entry[1], p.pid))
        deadline = time.monotonic() + 3
        for d in sorted(entry[2]):
            if pid_alive(d):
                try:
                    os.kill(d, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for d in sorted(entry[2]):
            while pid_alive(d) and time.monotonic() < deadline:
                time.sleep(0.02)
        self.live.remove(entry)

    def stop_all(self):
        for entry in list(reversed(self.live)):
            self.stop(entry[0], grace=2.0)


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return ""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(addr, path="/", timeout=2.0):
    """One GET with Connection: close; returns the status code or None."""
    fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    try:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(addr)
            s.sendall(b"GET " + path.encode() +
                      b" HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            data = b""
            for _ in range(1000):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        m = re.match(rb"HTTP/1\.[01] (\d+)", data)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def wait_http(addr, proc, what, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError("%s exited with status %s:\n%s" % (
                what, proc.returncode, tail(proc.bench_log)))
        if http_get(addr, timeout=1.0) == 200:
            return
        time.sleep(0.02)
    raise BenchError("%s not answering after %.0fs:\n%s" % (
        what, timeout, tail(proc.bench_log) if proc else ""))


def wait_accept(path, proc, what, timeout=30.0):
    """Wait until the Unix socket path accepts a connection."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError("%s exited with status %s:\n%s" % (
                what, proc.returncode, tail(proc.bench_log)))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            try:
                s.connect(path)
                return
            except OSError:
                pass
        time.sleep(0.02)
    raise BenchError("%s not accepting after %.0fs:\n%s" % (
        what, timeout, tail(proc.bench_log)))


class Notify:
    """A NOTIFY_SOCKET for socketnautd: READY=1 and STATUS= lines, drained
    by a thread so the daemon never finds the socket full."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.max_online = 0
        self.max_ready = 0
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            for line in data.decode("utf-8", "replace").splitlines():
                if line == "READY=1":
                    self.ready.set()
                m = re.search(r"(\d+)/(\d+) ready", line)
                if line.startswith("STATUS=") and m:
                    with self.lock:
                        self.max_ready = max(self.max_ready, int(m.group(1)))
                        self.max_online = max(self.max_online,
                                              int(m.group(2)))

    def reset_peaks(self):
        with self.lock:
            self.max_online = self.max_ready = 0

    def close(self):
        self.stopping.set()
        self.thread.join(timeout=2)
        self.sock.close()


# --------------------------------------------------------------------------
# the systems under test

class Bench:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.procs = Procs(tmp)
        self.nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.nginx_module = None
        self.seq = 0

    def newdir(self, name):
        self.seq += 1
        d = os.path.join(self.tmp, "%02d-%s" % (self.seq, name))
        os.mkdir(d)
        return d

    # -- backends --------------------------------------------------------

    def backends_unix(self, d, count, delay=0, kind="c"):
        """count backends (bench-backend, or node-worker.mjs when kind is
        "node") on Unix sockets in d.  For Node, self.last_starts gets each
        process's CPU seconds and wall seconds from exec until its socket
        was bound (its start-up cost, before any request)."""
        procs, paths = [], []
        t0 = []
        for i in range(count):
            path = os.path.join(d, "be%d.sock" % i)
            if kind == "node":
                argv = [node_binary(), NODE_WORKER, "--socket", path,
                        "--delay", str(delay),
                        "--trace", os.path.join(d, "trace.log")]
            else:
                argv = [BACKEND, "--socket", path]
                if delay:
                    argv += ["--delay", str(delay)]
            t0.append(time.monotonic())
            procs.append(self.procs.start(
                "node-worker" if kind == "node" else "backend", argv))
            paths.append(path)
        if kind == "node":
            # the path appears at bind(), listen() follows in the same tick;
            # read the CPU then, before the GET below (which busy-waits)
            starts = [None] * count
            deadline = time.monotonic() + 60 + count * 0.5
            while None in starts and time.monotonic() < deadline:
                for i, (p, path) in enumerate(zip(procs, paths)):
                    if starts[i] is None and os.path.exists(path):
                        starts[i] = (cpu_ns(p.pid) / 1e9,
                                     time.monotonic() - t0[i])
                    elif starts[i] is None and p.poll() is not None:
                        raise BenchError("node worker exited (%s):\n%s" % (
                            p.returncode, tail(p.bench_log)))
                time.sleep(0.005)
            if None in starts:
                raise BenchError("node workers did not bind their socket "
                                 "in time")
            self.last_starts = starts
            # one GET on each would busy-wait 100 ms per worker, in series:
            # check that each accepts, and GET only the first
            for p, path in zip(procs, paths):
                wait_accept(path, p, "node worker on " + path)
            wait_http(paths[0], procs[0], "node worker on " + paths[0])
            return procs, paths
        for p, path in zip(procs, paths):
            wait_http(path, p, "bench-backend on " + path)
        return procs, paths

    def backends_tcp(self, port, count):
        procs = [self.procs.start("backend", [BACKEND, "--port", str(port)])
                 for _ in range(count)]
        for p in procs:
            wait_http(("127.0.0.1", port), p, "bench-backend on %d" % port)
        # every process must be listening before the clients come
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if all(p.poll() is None for p in procs):
                out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port],
                                     capture_output=True, text=True,
                                     timeout=5).stdout \
                    if shutil.which("ss") else None
                if out is None or len(out.strip().splitlines()) >= count:
                    break
            time.sleep(0.02)
        return procs

    # -- the proxies -----------------------------------------------------

    def start(self, target, pool=2, delay=0, autoscale=None, kind="c",
              options=None):
        """Start one system; returns (port, proxy pid or None, handle).
        kind "node" puts bench/node-worker.mjs behind it instead of
        bench-backend; options (socketnautd only) is a dict of extra
        service settings, written as key = value."""
        d = self.newdir(target)
        port = free_port()
        h = {"procs": [], "dir": d, "notify": None, "target": target,
             "backends": []}
        try:
            if target == "direct":
                h["procs"] = self.backends_tcp(port, pool)
                h["pid"] = None
            elif target in AB_SYSTEMS:
                self.start_socketnautd(
                    h, d, port, pool, delay, autoscale, kind, options or {},
                    self.args.sn_global if target == "socketnautd-b" else [],
                    self.args.sn_service_b if target == "socketnautd-b"
                    else [],
                    binary=self.args.sn_b_binary
                    if target == "socketnautd-b" else None)
            elif target == "handoff":
                # mode handoff: the backend takes each client's fd from
                # the master (libsocketnaut), the master leaves the path
                self.start_socketnautd(h, d, port, pool, delay, autoscale,
                                       kind, dict(options or {},
                                                  backend="agent",
                                                  mode="handoff"),
                                       handoff=True)
            else:
                bprocs, paths = self.backends_unix(d, pool, delay, kind)
                h["procs"] = bprocs
                h["backends"] = list(bprocs)
                if target == "haproxy":
                    self.start_haproxy(h, d, port, paths)
                else:
                    self.start_nginx(h, d, port, paths)
        except BaseException:
            self.stop(h)
            raise
        h["port"] = port
        return h

    def start_socketnautd(self, h, d, port, pool, delay, autoscale,
                          kind="c", options=None, global_lines=(),
                          service_lines=(), handoff=False, binary=None):
        binary = binary or SOCKETNAUTD
        if handoff:
            cmd = "%s --handoff" % BACKEND
        elif kind == "node":
            # the seed's own set-up: the worker on unix:{socket}
            cmd = "%s %s --socket {socket} --delay %d --trace %s" % (
                node_binary(), NODE_WORKER, delay,
                os.path.join(d, "trace.log"))
        elif self.args.socket_activation:
            cmd = BACKEND   # it takes fd 3 (LISTEN_FDS)
        else:
            cmd = "%s --socket {socket}" % BACKEND
        if delay and kind != "node":
            cmd += " --delay %d" % delay
        if kind != "node" and any("proxy_protocol" in line for line in
                                  self.args.sn_service_b):
            cmd += " --proxy-protocol"  # A and B: it takes one or none
        if autoscale:
            sizing = "min_workers = %d\n    max_workers = %d" % autoscale
        else:
            sizing = "worker_count = %d" % pool
        extra = "".join("\n    " + line
                        for line in list(self.args.sn_conf) + list(service_lines))
        extra += "".join("\n    %s = %s" % kv
                         for kv in (options or {}).items())
        activation = ("\n    socket_activation = true"
                      if self.args.socket_activation and kind != "node"
                      and not handoff else "")
        conf = os.path.join(d, "socketnaut.conf")
        glob = "".join(line.replace("{dir}", d) + "\n"
                       for line in global_lines)
        with open(conf, "w") as f:
            f.write(f"""# written by bench/run.py
{glob}runtime_dir = "{d}/run"
shutdown_timeout = 1s
kill_timeout = 1s
service "bench" {{
    listen = {{ "127.0.0.1:{port}" }}
    command = "{cmd}"
    {sizing}{activation}{extra}
}}
""")
        check = subprocess.run([binary, "-t", "-c", conf],
                               capture_output=True, text=True, timeout=10)
        if check.returncode != 0:
            raise BenchError("socketnautd -t rejects the bench config:\n" +
                             check.stderr)
        notify = Notify(os.path.join(d, "notify.sock"))
        h["notify"] = notify
        env = dict(os.environ, NOTIFY_SOCKET=notify.path)
        p = self.procs.start("socketnautd", [binary, "-c", conf], env=env)
        h["procs"].append(p)
        h["pid"] = p.pid
        deadline = time.monotonic() + 30
        while not notify.ready.wait(0.05):
            if p.poll() is not None:
                raise BenchError("socketnautd exited with status %s:\n%s" % (
                    p.returncode, tail(p.bench_log)))
            if time.monotonic() > deadline:
                raise BenchError("socketnautd sent no READY=1 in 30s:\n" +
                                 tail(p.bench_log))
        wait_http(("127.0.0.1", port), p, "socketnautd")
        self.procs.note_children(p)

    def start_haproxy(self, h, d, port, paths):
        maxconn = max(1000, min(self.args.idle_conns + 2000,
                                (self.nofile - 200) // 2))
        servers = "\n".join("    server s%d unix@%s" % (i, p)
                            for i, p in enumerate(paths))
        tune = ("    tune.bufsize %d\n" % self.args.ref_bufsize
                if self.args.ref_bufsize else "")
        # bench/timeline.py: one line per connection on stdout
        logging = ('    log stdout format raw local0 info\n'
                   '    log-format "%cp %Ts %ms %Tw %Tc %Tt %s"\n'
                   if getattr(self, "haproxy_log", False) else "")
        conf = os.path.join(d, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write(f"""# written by bench/run.py
global
    nbthread 1
    maxconn {maxconn}
{tune}
defaults
    mode tcp
    timeout connect 5s
    timeout client 5m
    timeout server 5m
    maxconn {maxconn}
{logging}
listen bench
    bind 127.0.0.1:{port}
    balance leastconn
{servers}
""")
        p = self.procs.start("haproxy", ["haproxy", "-f", conf, "-db"])
        h["procs"].append(p)
        h["pid"] = p.pid
        wait_http(("127.0.0.1", port), p, "haproxy")

    def start_nginx(self, h, d, port, paths):
        conns = max(1024, 2 * (self.args.idle_conns + 2000))
        servers = "\n".join("        server unix:%s;" % p for p in paths)
        load = ("load_module %s;\n" % self.nginx_module
                if self.nginx_module else "")
        user = "user root;\n" if os.geteuid() == 0 else ""
        bufsize = ("        proxy_buffer_size %d;\n" % self.args.ref_bufsize
                   if self.args.ref_bufsize else "")
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""# written by bench/run.py
{load}{user}worker_processes 1;
worker_rlimit_nofile {self.nofile};
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{
    worker_connections {conns};
}}
stream {{
    upstream backends {{
        least_conn;
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_pass backends;
        proxy_timeout 5m;
{bufsize}    }}
}}
""")
        p = self.procs.start("nginx", ["nginx", "-e", d + "/nginx-error.log",
                                       "-p", d, "-c", conf,
                                       "-g", "daemon off;"])
        h["procs"].append(p)
        wait_http(("127.0.0.1", port), p, "nginx")
        workers = []
        deadline = time.monotonic() + 5
        while not workers and time.monotonic() < deadline:
            for c in descendants(p.pid):
                try:
                    with open("/proc/%d/cmdline" % c, "rb") as f:
                        if b"worker process" in f.read():
                            workers.append(c)
                except OSError:
                    pass
            if not workers:
                time.sleep(0.05)
        if len(workers) != 1:
            raise BenchError("nginx: expected one worker process, found %r"
                             % workers)
        h["pid"] = workers[0]
        self.procs.note_children(p)

    def stop(self, h):
        # the proxy first (so it does not see its backends vanish), then
        # the backends
        for p in reversed(h["procs"]):
            self.procs.stop(p)
        if h.get("notify"):
            h["notify"].close()
        h["procs"] = []


# --------------------------------------------------------------------------
# load generators

def run_wrk(args, port, path, conns, secs, extra=(), latency=False,
            scheme="http"):
    argv = ["wrk", "-t1", "-c%d" % conns, "-d%ds" % secs, "-s", SUMMARY_LUA]
    if latency:
        argv.append("--latency")
    argv += list(extra)
    argv.append("%s://127.0.0.1:%d%s" % (scheme, port, path))
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=secs + 30)
    except BaseException:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(timeout=5)
        raise
    m = re.search(r"BENCH-SUMMARY (.*)", out)
    if p.returncode != 0 or not m:
        raise BenchError("wrk failed (%s):\n%s\n%s" % (p.returncode, out, err))
    r = {k: int(v) for k, v in
         (kv.split("=") for kv in m.group(1).split())}
    dur = r["duration_us"] / 1e6
    r["rps"] = r["requests"] / dur
    r["bps"] = r["bytes"] / dur
    r["errors"] = (r["connect"] + r["read"] + r["write"] + r["status"] +
                   r["timeout"])
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    return r


def idle_test(port, pid, n, settle=0.3):
    """Open n connections through the proxy, then one request on each;
    returns the proxy's RSS growth per connection at both points."""
    time.sleep(settle)
    rss0, fd0 = rss_kib(pid), fd_count(pid)
    socks, errors = [], 0
    deadline = time.monotonic() + 30
    try:
        for _ in range(n):
            if time.monotonic() > deadline:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                errors += 1
                if errors > 50:
                    break
                continue
            socks.append(s)
        opened = len(socks)
        if opened == 0:
            raise BenchError("idle: no connection could be opened")
        # wait for the proxy to hold client + backend side of each
        want = fd0 + 2 * opened
        deadline = time.monotonic() + 10
        while fd_count(pid) < want and time.monotonic() < deadline:
            time.sleep(0.05)
        fds_reached = fd_count(pid) >= want
        time.sleep(settle)
        rss1 = rss_kib(pid)

        # one request on each, every response read in full
        req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
        for s in socks:
            s.setblocking(False)
        sel = selectors.DefaultSelector()
        pending = {}
        for s in socks:
            try:
                s.send(req)
            except OSError:
                errors += 1
                continue
            pending[s.fileno()] = [s, b""]
            sel.register(s, selectors.EVENT_READ)
        ok = 0
        deadline = time.monotonic() + 20
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.5):
                ent = pending.get(key.fd)
                if ent is None:
                    continue
                try:
                    chunk = ent[0].recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    errors += 1
                    sel.unregister(ent[0])
                    del pending[key.fd]
                    continue
                ent[1] += chunk
                head_end = ent[1].find(b"\r\n\r\n")
                if head_end >= 0:
                    m = re.search(rb"Content-Length: (\d+)", ent[1][:head_end])
                    if m and len(ent[1]) >= head_end + 4 + int(m.group(1)):
                        ok += ent[1].startswith(b"HTTP/1.1 200")
                        sel.unregister(ent[0])
                        del pending[key.fd]
        errors += len(pending)
        sel.close()
        time.sleep(settle)
        rss2 = rss_kib(pid)
        return {"opened": opened, "answered": ok, "errors": errors,
                "fds_reached": fds_reached,
                "rss0_kib": rss0, "rss1_kib": rss1, "rss2_kib": rss2,
                "fresh_b": (rss1 - rss0) * 1024.0 / opened,
                "used_b": (rss2 - rss0) * 1024.0 / opened}
    finally:
        for s in socks:
            s.close()
        time.sleep(settle)


async def _burst(port, n, size, timeout):
    base = os.urandom(size + 4096)
    head = (b"POST /echo HTTP/1.1\r\nHost: bench\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % size)

    conn_at, sent_at = [], []

    async def one(i):
        off = (i * 61) % 4096
        body = base[off:off + size]
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       limit=1 << 20)
        conn_at.append(time.monotonic())
        try:
            writer.write(head)
            writer.write(body)
            await writer.drain()
            sent_at.append(time.monotonic())
            rhead = await reader.readuntil(b"\r\n\r\n")
            m = re.search(rb"Content-Length: (\d+)", rhead)
            if not rhead.startswith(b"HTTP/1.1 200") or not m:
                return "status"
            data = await reader.readexactly(int(m.group(1)))
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

    t0 = time.monotonic()
    results = await asyncio.gather(*(guarded(i) for i in range(n)))
    wall = time.monotonic() - t0
    kinds = {}
    for r in results:
        if r != "ok":
            kinds[r] = kinds.get(r, 0) + 1
    # when the client had connected every socket, and had handed half and
    # all of the request bodies to the kernel (drain: the proxy reads them)
    conn = max(conn_at) - t0 if conn_at else None
    sent = sorted(x - t0 for x in sent_at)
    return wall, kinds, conn, sent


def burst_test(port, n, size, timeout):
    wall, kinds, conn, sent = asyncio.run(_burst(port, n, size, timeout))
    return {"wall": wall, "errors": sum(kinds.values()), "kinds": kinds,
            "connected": conn,
            "sent_half": sent[len(sent) // 2] if sent else None,
            "sent_all": sent[-1] if len(sent) == n else None}


def warm_up_burst(bench, args):
    """One burst through nginx, not counted, before the first measured one.
    The first burst of a bench process is the slowest whichever system meets
    it (this warm-up through nginx: 2.75 s, then 1.42-1.45 s in the rounds;
    without it socketnautd, first in round 1, took 2.2-2.9 s against 1.6-2.0 s
    in later rounds), so one system's median always carried it."""
    h = bench.start("nginx", pool=args.burst_ref_pool, delay=args.burst_delay)
    try:
        r = burst_test(h["port"], args.burst, args.burst_size, timeout=120)
        log("  warm-up burst through nginx (not counted): %.2f s, %d errors"
            % (r["wall"], r["errors"]))
    finally:
        bench.stop(h)


# --------------------------------------------------------------------------
# burst-node: the seed's showcase, Node workers that block 100 ms a request

NODE_SYSTEMS = ["socketnautd", "haproxy-100", "haproxy-10", "nginx-100",
                "nginx-10"]


def node_binary():
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        raise BenchError("burst-node needs node (apt-get install nodejs)")
    return node


def node_label(t, args):
    if t == "socketnautd":
        return "socketnautd %d→%d" % (args.node_min, args.node_max)
    name, n = t.split("-")
    n = args.burst_ref_pool if n == "100" else args.burst_ref_small_pool
    return "%s %d" % (LABEL[name], n)


def proc_start_wall(pid, hz):
    """Wall-clock time (s) at which pid was started: /proc gives clock
    ticks since boot (CLOCK_BOOTTIME; btime in /proc/stat is only whole
    seconds)."""
    with open("/proc/%d/stat" % pid, "rb") as f:
        data = f.read()
    rest = data[data.rfind(b")") + 2:].split()
    since = time.clock_gettime(time.CLOCK_BOOTTIME) - int(rest[19]) / hz
    return time.time() - since


def sampler_main(master, match):
    """bench/run.py --sample-workers PID MATCH: run as a process of its own
    (so that it takes no GIL from the burst client) while socketnautd
    serves a burst.  Every 0.1 s it lists master's children whose command
    line holds MATCH (the workers) and reads their CPU time; every 5 ms it
    checks whether a starting worker has bound its socket (the argument
    after --socket; a file newer than the process).  The workers seen in
    the first scan were started before the burst.  Prints "scanning" after
    the first scan; on SIGTERM (or after 15 minutes) prints one line of
    JSON: per worker, whether it predates the burst, its start time, when
    its socket was bound and its CPU time then and at the end."""
    import json
    stop = []
    signal.signal(signal.SIGTERM, lambda s, f: stop.append(s))
    hz = os.sysconf("SC_CLK_TCK")
    seen = {}
    first = True
    next_scan = 0.0
    deadline = time.monotonic() + 900
    while not stop and time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_scan:
            for pid, ppid in proc_table().items():
                if ppid != master or pid in seen:
                    continue
                try:
                    with open("/proc/%d/cmdline" % pid, "rb") as f:
                        argv = f.read().decode("utf-8", "replace") \
                            .split("\0")
                    start = proc_start_wall(pid, hz)
                    cpu = cpu_ns(pid)
                except (OSError, ValueError, IndexError):
                    continue
                if not any(match in a for a in argv):
                    continue
                sock = argv[argv.index("--socket") + 1] \
                    if "--socket" in argv[:-1] else None
                seen[pid] = {"pre": first, "start": start, "sock": sock,
                             "base_cpu": cpu / 1e9 if first else 0.0,
                             "cpu": cpu / 1e9,
                             "ready": start if first else None,
                             "ready_cpu": None}
            for pid, e in seen.items():
                try:
                    e["cpu"] = cpu_ns(pid) / 1e9
                except (OSError, ValueError, IndexError):
                    pass        # exited: keep its last reading
            if first:
                print("scanning", flush=True)
            first = False
            next_scan = now + 0.1
        for pid, e in seen.items():
            if e["ready"] is not None or not e["sock"]:
                continue
            try:
                st = os.stat(e["sock"])
            except OSError:
                continue
            # clock ticks are 10 ms: a path older than that is the
            # socket of an earlier worker in the same slot
            if st.st_mtime >= e["start"] - 0.02:
                e["ready"] = time.time()
                try:
                    e["ready_cpu"] = cpu_ns(pid) / 1e9
                except (OSError, ValueError, IndexError):
                    pass
        time.sleep(0.005)
    print(json.dumps({str(k): v for k, v in seen.items()}), flush=True)
    return 0


class Sampler:
    """The --sample-workers process for one burst."""

    def __init__(self, master):
        self.p = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--sample-workers",
             str(master), os.path.basename(NODE_WORKER)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            start_new_session=True, text=True)
        sel = selectors.DefaultSelector()
        sel.register(self.p.stdout, selectors.EVENT_READ)
        ok = sel.select(timeout=10)
        sel.close()
        if not ok or self.p.stdout.readline().strip() != "scanning":
            self.kill()
            raise BenchError("worker sampler did not start")

    def finish(self):
        import json
        self.p.send_signal(signal.SIGTERM)
        try:
            out, _ = self.p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError("worker sampler did not answer")
        return {int(k): v for k, v in json.loads(out).items()}

    def kill(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.p.wait(timeout=5)


def listen_overflows():
    """The kernel's count of connections dropped because a listen queue
    was full (TcpExt ListenOverflows, whole machine): the client's SYN is
    then retried 1 s, 3 s, 7 s ... later."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
        for head, vals in zip(lines[::2], lines[1::2]):
            if head.startswith("TcpExt:"):
                d = dict(zip(head.split()[1:], vals.split()[1:]))
                return int(d["ListenOverflows"])
    except (OSError, KeyError, ValueError):
        pass
    return None


def daemon_log_since(path, offset):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def trace_stats(path, t0, pre):
    """Read the node-worker.mjs --trace lines of a burst that started at t0
    (wall clock, s); pre: pids of the workers running before it.  Returns
    (times in s after t0) when the first request of the burst reached any
    worker's handler, the requests the pre-started workers served and the
    medians of their first request and of their last request's end."""
    first, last, reqs = {}, {}, {}
    try:
        with open(path) as f:
            for line in f:
                try:
                    pid, a, b = (int(x) for x in line.split())
                except ValueError:
                    continue
                a, b = a / 1000.0, b / 1000.0
                if a < t0 - 0.05:
                    continue        # the driver's readiness GET
                first[pid] = min(first.get(pid, a), a)
                last[pid] = max(last.get(pid, b), b)
                reqs[pid] = reqs.get(pid, 0) + 1
    except OSError:
        return None
    pre_first = [first[p] - t0 for p in pre if p in first]
    pre_last = [last[p] - t0 for p in pre if p in last]
    return {"pre_reqs": sum(reqs.get(p, 0) for p in pre),
            "first": min(first.values()) - t0 if first else None,
            "pre_first": statistics.median(pre_first) if pre_first else None,
            "pre_done": statistics.median(pre_last) if pre_last else None,
            "served": sum(reqs.values())}


def run_burst_node(bench, t, rnd, args, nadd, notes):
    """One Node burst against system t (NODE_SYSTEMS); returns nothing,
    records into nadd(metric, system, value)."""
    kind = "node"
    if t == "socketnautd":
        h = bench.start(t, delay=args.burst_delay, kind=kind,
                        autoscale=(args.node_min, args.node_max),
                        options=args.sn_opt)
    else:
        name, n = t.split("-")
        pool = args.burst_ref_pool if n == "100" else \
            args.burst_ref_small_pool
        h = bench.start(name, pool=pool, delay=args.burst_delay, kind=kind)
        starts = bench.last_starts
    sampler = None
    try:
        extra = ""
        if t == "socketnautd":
            # let the minimum pool settle (it is up: READY=1 came)
            time.sleep(0.5)
            h["notify"].reset_peaks()
            master = h["pid"]
            logpath = h["procs"][0].bench_log
            log_off = os.path.getsize(logpath)
            sampler = Sampler(master)
            cpu_before = None
        else:
            cpu_before = {p.pid: cpu_ns(p.pid) for p in h["backends"]}
        proxy_cpu0 = cpu_ns(h["pid"])
        ovf0 = listen_overflows()
        t_wall0 = time.time()
        r = burst_test(h["port"], args.burst, args.burst_size, timeout=180)
        nadd("proxy_cpu", t, (cpu_ns(h["pid"]) - proxy_cpu0) / 1e9)
        ovf1 = listen_overflows()
        if ovf0 is not None and ovf1 is not None:
            nadd("overflows", t, ovf1 - ovf0)
        trace = os.path.join(h["dir"], "trace.log")
        if t == "socketnautd":
            time.sleep(0.1)
            seen = sampler.finish()
            sampler = None
            ts = trace_stats(trace, t_wall0,
                             {p for p, e in seen.items() if e["pre"]})
            new = [e for e in seen.values() if not e["pre"]]
            start_cpu = sum(e["ready_cpu"] for e in new
                            if e["ready_cpu"] is not None)
            worker_cpu = sum(e["cpu"] - e["base_cpu"] for e in seen.values())
            peak = h["notify"].max_online
            text = daemon_log_since(logpath, log_off)
            ready_ms = [int(m) for m in re.findall(
                r"worker \d+: ready at .* after (\d+)ms", text)]
            nstarted = len(re.findall(r"worker \d+: started \(slot", text))
            bound = [e["ready"] - t_wall0 for e in new
                     if e["ready"] is not None]
            nadd("peak", t, peak)
            nadd("started", t, nstarted)
            nadd("start_cpu", t, start_cpu)
            nadd("worker_cpu", t, worker_cpu)
            if ready_ms:
                nadd("ready_med", t, statistics.median(ready_ms) / 1000.0)
                nadd("ready_max", t, max(ready_ms) / 1000.0)
            if bound:
                nadd("last_bound", t, max(bound))
            if new:
                nadd("last_start", t,
                     max(e["start"] for e in new) - t_wall0)
            warn = [line for line in text.splitlines()
                    if line.startswith(("warning:", "error:"))]
            extra = (", peak %d workers, %d started (daemon: ready after "
                     "%s ms median, %s ms max; last socket bound %.2f s "
                     "into the burst), start CPU %.2f s, worker CPU %.2f s"
                     % (peak, nstarted,
                        "%.0f" % statistics.median(ready_ms)
                        if ready_ms else "–",
                        "%d" % max(ready_ms) if ready_ms else "–",
                        max(bound) if bound else 0.0, start_cpu,
                        worker_cpu))
            if warn:
                notes.append("round %d: socketnautd (Node) logged %d "
                             "warnings, first: %s" % (rnd + 1, len(warn),
                                                      warn[0]))
        else:
            worker_cpu = sum(cpu_ns(pid) - c for pid, c in
                             cpu_before.items()) / 1e9
            ts = trace_stats(trace, t_wall0, set(cpu_before))
            start_cpu = sum(c for c, _ in starts)
            nadd("peak", t, len(h["backends"]))
            nadd("start_cpu_ahead", t, start_cpu)
            nadd("worker_cpu", t, worker_cpu)
            extra = (", %d workers started in advance (start CPU %.2f s, "
                     "%.0f ms median each), worker CPU %.2f s" % (
                         len(starts), start_cpu,
                         1000 * statistics.median(c for c, _ in starts),
                         worker_cpu))
        nadd("wall", t, r["wall"])
        nadd("errors", t, r["errors"])
        for k in ("connected", "sent_half", "sent_all"):
            if r[k] is not None:
                nadd(k, t, r[k])
        extra += ", client: all connected %s, half the bodies sent %s, " \
            "all %s" % tuple("%.2f s" % r[k] if r[k] is not None else "–"
                             for k in ("connected", "sent_half", "sent_all"))
        if ts:
            nadd("pre_reqs", t, ts["pre_reqs"])
            for k in ("first", "pre_first", "pre_done"):
                if ts[k] is not None:
                    nadd(k, t, ts[k])
            extra += (", first request handled %.2f s in; workers up "
                      "before the burst served %d requests, first %.2f s "
                      "in, last done %.2f s in (medians)" % (
                          ts["first"] or 0.0, ts["pre_reqs"],
                          ts["pre_first"] or 0.0, ts["pre_done"] or 0.0))
        if ovf0 is not None and ovf1 is not None:
            extra += ", %d listen queue overflows" % (ovf1 - ovf0)
        log("  %-11s node burst %.2f s, %d errors%s%s" % (
            t, r["wall"], r["errors"],
            " %r" % r["kinds"] if r["kinds"] else "", extra))
        if r["errors"]:
            notes.append("round %d: %s: Node burst errors %r" % (
                rnd + 1, node_label(t, args), r["kinds"]))
        check_alive(h, t, "node burst")
    finally:
        if sampler:
            sampler.kill()
        bench.stop(h)


def node_table(nres, args):
    spec = [("wall", "wall time (↓)", fmt_s, med),
            ("errors", "errors (worst round)", fmt_int, max),
            ("peak", "peak workers online", fmt_int, med),
            ("started", "workers started during the burst", fmt_int, med),
            ("start_cpu", "CPU of those starts (exec → socket bound)",
             fmt_s, med),
            ("start_cpu_ahead", "CPU of the pool's starts, in advance "
             "(exec → socket bound)", fmt_s, med),
            ("ready_med", "start → ready, median (daemon log)", fmt_s, med),
            ("ready_max", "start → ready, max (daemon log)", fmt_s, med),
            ("last_start", "last new worker started, after burst start",
             fmt_s, med),
            ("last_bound", "last new worker bound its socket, "
             "after burst start", fmt_s, med),
            ("worker_cpu", "CPU of all workers during the burst", fmt_s,
             med),
            ("proxy_cpu", "proxy CPU during the burst (socketnautd's "
             "master, HAProxy, nginx's worker)", fmt_s, med),
            ("overflows", "listen queue overflows during the burst "
             "(TcpExt ListenOverflows, whole machine)", fmt_int, med),
            ("connected", "client: every connection established, after "
             "burst start", fmt_s, med),
            ("sent_half", "client: half the request bodies sent (drained)",
             fmt_s, med),
            ("sent_all", "client: every request body sent (drained)", fmt_s,
             med),
            ("first", "first request reached a worker's handler, after "
             "burst start", fmt_s, med),
            ("pre_reqs", "requests served by the workers up before the "
             "burst", fmt_int, med),
            ("pre_first", "those workers' first request, after burst "
             "start (median)", fmt_s, med),
            ("pre_done", "those workers' last request done, after burst "
             "start (median)", fmt_s, med)]
    head = ["Node burst"] + [node_label(t, args) for t in NODE_SYSTEMS]
    rows = []
    for key, title, fmt, agg in spec:
        vals = nres.get(key, {})
        if not vals:
            continue
        rows.append([title] + [fmt(agg(vals[t])) if vals.get(t) else "–"
                               for t in NODE_SYSTEMS])
    wall = {t: med(nres.get("wall", {}).get(t, [])) for t in NODE_SYSTEMS}
    rows.append(["socketnautd ÷ this (wall)"] + [
        ratio(wall["socketnautd"], wall[t]) for t in NODE_SYSTEMS])
    lines = [md_table(head, rows), ""]
    sn, hp = wall["socketnautd"], wall["haproxy-100"]
    errs = nres.get("errors", {}).get("socketnautd", [])
    if sn is not None and hp:
        met = sn <= 1.3 * hp and errs and max(errs) == 0
        lines.append("Issue 8 target: socketnautd (autoscaling from %d) "
                     "≤ 1.3× HAProxy with %d Node workers started in "
                     "advance, 0 errors: %.2f× → %s." % (
                         args.node_min, args.burst_ref_pool, sn / hp,
                         "met" if met else "NOT met"))
        lines.append("")
    lines.append("Every round (round 1 / round 2 / ...): " + "; ".join(
        "%s %s" % (node_label(t, args), " / ".join(
            "%s (%d err)" % (fmt_s(w), e) for w, e in zip(
                nres.get("wall", {}).get(t, []),
                nres.get("errors", {}).get(t, []))))
        for t in NODE_SYSTEMS if nres.get("wall", {}).get(t)) + ".")
    return "\n".join(lines)


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def run_idle(bench, h, t, rnd, args, add, notes):
    r = idle_test(h["port"], h["pid"], args.idle_conns)
    add("idle_fresh", t, r["fresh_b"])
    add("idle_used", t, r["used_b"])
    log("  %-11s idle: %d conns, %.0f B/conn fresh, %.0f B/conn after a "
        "request (RSS %d -> %d -> %d KiB), %d errors%s" % (
            t, r["opened"], r["fresh_b"], r["used_b"], r["rss0_kib"],
            r["rss1_kib"], r["rss2_kib"], r["errors"],
            "" if r["fds_reached"] else
            ", proxy did not open every backend connection before the "
            "request"))
    if r["errors"]:
        notes.append("round %d: %s: %d idle-test errors of %d connections"
                     % (rnd + 1, LABEL[t], r["errors"], r["opened"]))
    check_alive(h, t, "idle")


def run_ab(bench, args, add, notes, load):
    """--sn-global: socketnautd as is (A) and with the extra global lines (B),
    both running for the whole round, each scenario visiting them back to
    back, their order swapped every round."""
    for rnd in range(args.rounds):
        order = AB_SYSTEMS if rnd % 2 == 0 else AB_SYSTEMS[::-1]
        load.append(loadavg())
        log("round %d/%d: %s (load average %s)" % (
            rnd + 1, args.rounds, ", ".join(order), load[-1]))
        hs = {}
        try:
            for t in order:
                hs[t] = bench.start(t)
            for name in ("ka", "close", "bulk"):
                if name in args.scen:
                    for t in order:
                        run_scenario(hs[t], t, name, rnd, args, add, notes)
        finally:
            for t in reversed(list(hs)):
                bench.stop(hs[t])


def ab_table(res, args):
    """A against B: medians, B/A, and every round's values."""
    titles = {"ka_rps": ("keep-alive: requests/s", fmt_rps),
              "ka_cpu": ("keep-alive: proxy CPU per request", fmt_us),
              "close_rps": ("Connection: close: requests/s", fmt_rps),
              "close_cpu": ("Connection: close: proxy CPU per connection",
                            fmt_us),
              "bulk_bps": ("bulk: bytes/s", fmt_gbs),
              "bulk_cpu": ("bulk: proxy CPU per MiB", fmt_us),
              "wrk_err": ("wrk errors + non-2xx", fmt_int)}
    rows = []
    for key, (title, fmt) in titles.items():
        vals = res.get(key)
        if not vals:
            continue
        a, b = (vals.get(t, []) for t in AB_SYSTEMS)
        ma, mb = med(a), med(b)
        rows.append([title, fmt(ma) if ma is not None else "–",
                     fmt(mb) if mb is not None else "–", ratio(mb, ma),
                     " / ".join(fmt(v) for v in a),
                     " / ".join(fmt(v) for v in b)])
    b = "B: the other binary" if args.sn_b_binary else \
        "B: with the extra settings"
    return md_table(["scenario", "A: socketnautd", b,
                     "B/A", "A per round", "B per round"], rows)


def check_alive(h, t, what):
    for p in h["procs"]:
        if p.poll() is not None:
            raise BenchError("%s: %s exited (status %s) during %s:\n%s" % (
                t, p.bench_name, p.returncode, what, tail(p.bench_log)))


def run_scenario(h, t, name, rnd, args, add, notes):
    port = h["port"]
    c0 = cpu_ns(h["pid"]) if h["pid"] else None
    if name == "ka":
        w = run_wrk(args, port, "/", args.conns, args.ka_seconds, (), True)
        add("ka_rps", t, w["rps"])
        add("ka_p99", t, w["p99_us"] / 1000.0)
        desc = "%.0f req/s, p99 %.2f ms" % (w["rps"], w["p99_us"] / 1000.0)
    elif name == "close":
        w = run_wrk(args, port, "/", args.conns, args.seconds,
                    ("-H", "Connection: close"))
        add("close_rps", t, w["rps"])
        desc = "%.0f req/s" % w["rps"]
    else:
        w = run_wrk(args, port, "/bytes?n=%d" % BULK_SIZE, args.bulk_conns,
                    args.seconds)
        add("bulk_bps", t, w["bps"])
        desc = "%.2f GB/s" % (w["bps"] / 1e9)
    if c0 is not None and w["requests"] > 0:
        us = (cpu_ns(h["pid"]) - c0) / 1000.0
        if name == "bulk":
            per = us / (w["bytes"] / BULK_SIZE)
            desc += ", proxy CPU %.1f us/MiB" % per
        else:
            per = us / w["requests"]
            desc += ", proxy CPU %.2f us/req" % per
        add(name + "_cpu", t, per)
    errs = w["errors"] + w["non2xx"]
    add("wrk_err", t, errs)
    if errs:
        desc += ", %d errors (%s)" % (errs, ", ".join(
            "%s %d" % (k, w[k]) for k in
            ("connect", "read", "write", "timeout", "non2xx") if w[k]))
        notes.append("round %d: %s: %s: %s" % (rnd + 1, LABEL[t], name,
                                                desc))
    log("  %-11s %-5s %s" % (t, name, desc))
    check_alive(h, t, name)


# --------------------------------------------------------------------------
# set-up

def ensure_tools(args):
    need = []
    if not shutil.which("haproxy"):
        need.append("haproxy")
    if not shutil.which("nginx"):
        need += ["nginx-light", "libnginx-mod-stream"]
    elif nginx_stream_module() is False:
        need.append("libnginx-mod-stream")
    if not shutil.which("wrk"):
        need.append("wrk")
    if not shutil.which("cc"):
        need.append("gcc")
    if "burst-node" in args.scen and not (shutil.which("node") or
                                          shutil.which("nodejs")):
        need.append("nodejs")
    if not need:
        return
    if args.no_install:
        raise BenchError("missing: %s" % " ".join(need))
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("installing: " + " ".join(need))
    r = subprocess.run(sudo + ["apt-get", "install", "-y"] + need, env=env,
                       timeout=900)
    if r.returncode != 0:
        subprocess.run(sudo + ["apt-get", "update"], env=env, timeout=900)
        subprocess.run(sudo + ["apt-get", "install", "-y"] + need, env=env,
                       check=True, timeout=900)


def nginx_stream_module():
    """Path of the dynamic stream module, None when built in, False when
    missing."""
    v = subprocess.run(["nginx", "-V"], capture_output=True, text=True,
                       timeout=10).stderr
    if re.search(r"--with-stream(\s|$)", v):
        return None
    dirs = []
    m = re.search(r"--modules-path=(\S+)", v)
    if m:
        dirs.append(m.group(1))
    dirs += ["/usr/lib/nginx/modules", "/usr/share/nginx/modules",
             "/usr/lib64/nginx/modules"]
    for d in dirs:
        p = os.path.join(d, "ngx_stream_module.so")
        if os.path.exists(p):
            return p
    return False


def build_backend():
    lib = os.path.join(BUILD, "libsocketnaut.a")
    if (os.path.exists(BACKEND) and
            os.path.getmtime(BACKEND) >= os.path.getmtime(BACKEND_SRC) and
            os.path.getmtime(BACKEND) >= os.path.getmtime(lib)):
        return
    os.makedirs(BUILD, exist_ok=True)
    cc = os.environ.get("CC", "cc")
    # linked with libsocketnaut for --handoff (make bench builds it first)
    argv = [cc, "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
            "-I", os.path.join(ROOT, "include"), "-o", BACKEND, BACKEND_SRC,
            os.path.join(BUILD, "libsocketnaut.a")]
    log(" ".join(argv))
    subprocess.run(argv, check=True, timeout=120)


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if os.geteuid() == 0 and hard < want:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                want = min(want, int(f.read()))
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (OSError, ValueError):
            pass
    new = min(max(soft, want), hard) if hard != resource.RLIM_INFINITY \
        else want
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return new


def cmd_first_line(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        out = (r.stdout + r.stderr).strip().splitlines()
        return out[0].strip() if out else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = "%.1f GiB" % (kib / 1048576)
    except (OSError, ValueError, IndexError):
        pass
    commit = "?"
    try:
        r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short",
                            "HEAD"], capture_output=True, text=True,
                           timeout=10)
        if r.returncode == 0:
            commit = r.stdout.strip()
            st = subprocess.run(["git", "-C", ROOT, "status", "--porcelain",
                                 "--untracked-files=no", "src"],
                                capture_output=True, text=True, timeout=10)
            if st.stdout.strip():
                commit += " (src/ modified)"
    except (OSError, subprocess.SubprocessError):
        pass
    return [
        ("date", datetime.datetime.now(datetime.timezone.utc)
         .strftime("%Y-%m-%d %H:%M UTC")),
        ("CPUs (nproc)", str(os.cpu_count())),
        ("CPU", cpu),
        ("memory", mem),
        ("kernel", platform.release()),
        ("socketnautd", cmd_first_line([SOCKETNAUTD, "-V"]) + ", " + commit),
        ("HAProxy", cmd_first_line(["haproxy", "-v"])),
        ("nginx", cmd_first_line(["nginx", "-v"])),
        ("wrk", cmd_first_line(["wrk", "-v"])),
        ("python", platform.python_version()),
    ]


# --------------------------------------------------------------------------
# report

def med(xs):
    return statistics.median(xs) if xs else None


def fmt_rps(v):
    return "%.1fk" % (v / 1000)


def fmt_ms(v):
    return "%.2f ms" % v


def fmt_gbs(v):
    return "%.2f GB/s" % (v / 1e9)


def fmt_us(v):
    return "%.2f µs" % v if v < 10 else "%.1f µs" % v


def fmt_kib(v):
    return "%.2f KiB" % (v / 1024)


def fmt_s(v):
    return "%.2f s" % v


def fmt_int(v):
    return "%d" % v


def ratio(sn, ref):
    if sn is None or ref is None or ref == 0:
        return "–"
    return "%.2f×" % (sn / ref)


def build_table(res, args):
    """res[metric][target] = list of values over rounds."""
    rows = []
    spec = [
        ("ka_rps", "keep-alive, small: requests/s", "↑", fmt_rps,
         "≥ 1.00× best (stretch 1.10×)", lambda r: r >= 1.0),
        ("ka_p99", "keep-alive, small: p99 latency", "↓", fmt_ms,
         "≤ both", lambda r: r <= 1.0),
        ("close_rps", "Connection: close: requests/s", "↑", fmt_rps,
         "≥ 1.00× best", lambda r: r >= 1.0),
        ("bulk_bps", "bulk 1 MiB responses: bytes/s", "↑", fmt_gbs,
         "≥ 1.00× best (stretch 1.10×)", lambda r: r >= 1.0),
        ("ka_cpu", "keep-alive: proxy CPU per request", "↓", fmt_us, "",
         None),
        ("close_cpu", "Connection: close: proxy CPU per connection", "↓",
         fmt_us, "", None),
        ("bulk_cpu", "bulk: proxy CPU per MiB", "↓", fmt_us, "", None),
        ("idle_fresh", "idle conn, no data yet: RSS/conn", "↓", fmt_kib,
         "≤ 1 KiB", None),
        ("idle_used", "idle conn after 1 request: RSS/conn", "↓", fmt_kib,
         "≤ 1 KiB", None),
        ("burst_wall", "burst 1000×100 kB POST, 100 ms/req: wall time",
         "↓", fmt_s, "< 2.5 s", None),
        ("burst_err", "burst: errors", "↓", fmt_int, "0", None),
        ("burst_peak", "burst: peak workers online", "", fmt_int, "", None),
        ("wrk_err", "wrk socket errors + non-2xx (sum, all runs)", "↓",
         fmt_int, "0", None),
    ]
    for key, title, better, fmt, target, okf in spec:
        vals = res.get(key, {})
        if key in ("wrk_err",):
            m = {t: (sum(vals[t]) if vals.get(t) else None) for t in TARGETS}
        else:
            m = {t: med(vals.get(t, [])) for t in TARGETS}
        sn, ho, di = m["socketnautd"], m["handoff"], m["direct"]
        cells = [fmt(m[t]) if m[t] is not None else "–" for t in TARGETS]
        hp, ng = m["haproxy"], m["nginx"]
        best = None
        if better and hp is not None and ng is not None:
            best = max(hp, ng) if better == "↑" else min(hp, ng)
        if better and key not in ("burst_err", "wrk_err"):
            r_h, r_n, r_b = ratio(sn, hp), ratio(sn, ng), ratio(sn, best)
            h_b, h_d = ratio(ho, best), ratio(ho, di)
        else:
            r_h = r_n = r_b = h_b = h_d = "–"
        met = ""
        if sn is not None:
            if okf and best:
                if key == "ka_p99":
                    met = "yes" if sn <= hp and sn <= ng else "NO"
                else:
                    met = "yes" if okf(sn / best) else "NO"
            elif key in ("idle_fresh", "idle_used"):
                met = "yes" if sn <= 1024 else "NO"
            elif key == "burst_wall":
                met = "yes" if sn < 2.5 else "NO"
            elif key in ("burst_err", "wrk_err"):
                met = "yes" if sn == 0 else "NO"
        arrow = " (%s)" % better if better else ""
        rows.append([title + arrow] + cells +
                    [r_h, r_n, r_b, h_b, h_d, target, met])
    head = ["scenario (↑ higher is better, ↓ lower)", "socketnautd",
            "socketnautd (handoff)", "HAProxy", "nginx", "direct",
            "sn/HAProxy", "sn/nginx", "sn/best", "handoff/best",
            "handoff/direct", "target", "met"]
    return head, rows


def md_table(head, rows):
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    return "\n".join(out)


def spread_table(res):
    keys = [("ka_rps", "keep-alive req/s", fmt_rps),
            ("ka_p99", "keep-alive p99", fmt_ms),
            ("close_rps", "close req/s", fmt_rps),
            ("bulk_bps", "bulk bytes/s", fmt_gbs),
            ("ka_cpu", "keep-alive proxy CPU/req", fmt_us),
            ("close_cpu", "close proxy CPU/conn", fmt_us),
            ("bulk_cpu", "bulk proxy CPU/MiB", fmt_us),
            ("idle_fresh", "idle RSS/conn (no data)", fmt_kib),
            ("idle_used", "idle RSS/conn (after 1 req)", fmt_kib),
            ("burst_wall", "burst wall time", fmt_s)]
    head = ["scenario"] + [LABEL[t] for t in TARGETS]
    rows = []
    for key, title, fmt in keys:
        row = [title]
        for t in TARGETS:
            vs = res.get(key, {}).get(t, [])
            row.append(" / ".join(fmt(v) for v in vs) if vs else "–")
        rows.append(row)
    return md_table(head, rows)


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ka-seconds", type=int, default=5,
                    help="wrk duration, keep-alive (default 5)")
    ap.add_argument("--seconds", type=int, default=3,
                    help="wrk duration, close and bulk (default 3)")
    ap.add_argument("--conns", type=int, default=64,
                    help="wrk connections, keep-alive and close")
    ap.add_argument("--bulk-conns", type=int, default=8)
    ap.add_argument("--idle-conns", type=int, default=5000)
    ap.add_argument("--burst", type=int, default=1000,
                    help="concurrent POSTs in the burst")
    ap.add_argument("--burst-size", type=int, default=100 * 1000)
    ap.add_argument("--burst-delay", type=int, default=100,
                    help="ms each worker blocks per request")
    ap.add_argument("--burst-ref-pool", type=int, default=100,
                    help="fixed pool of the HAProxy/nginx burst, every round")
    ap.add_argument("--burst-ref-small-pool", type=int, default=10,
                    help="second fixed pool, measured once (0: skip)")
    ap.add_argument("--only", default="",
                    help="comma list of scenarios: ka,close,bulk,idle,burst,"
                    "burst-node, tls (default: all but burst-node and tls; "
                    "tls runs alone: bench/tlsbench.py)")
    ap.add_argument("--tls-certs", default="ecdsa,rsa",
                    help="tls: certificate kinds, ecdsa (P-256) and/or rsa "
                    "(2048)")
    ap.add_argument("--tls-clients", type=int, default=2,
                    help="tls: openssl s_time processes at once")
    ap.add_argument("--tls-idle", type=int, default=500,
                    help="tls: idle TLS connections for the memory figure")
    ap.add_argument("--node-min", type=int, default=10,
                    help="burst-node: socketnautd min_workers (default 10)")
    ap.add_argument("--node-max", type=int, default=100,
                    help="burst-node: socketnautd max_workers (default 100)")
    ap.add_argument("--node-systems", default="",
                    help="burst-node: comma list of the systems to run "
                    "(default all: %s)" % ",".join(NODE_SYSTEMS))
    ap.add_argument("--sn-opt", action="append", default=[],
                    metavar="KEY=VALUE", help="burst-node only: extra "
                    "setting for socketnautd's service block, written as "
                    "'KEY = VALUE', e.g. --sn-opt worker_concurrency=1 "
                    "(repeatable)")
    ap.add_argument("--ref-bufsize", type=int, default=0,
                    help="HAProxy tune.bufsize and nginx proxy_buffer_size "
                    "in bytes (default: their own defaults, 16 KiB)")
    ap.add_argument("--socket-activation", action="store_true",
                    help="socketnautd passes the worker socket as fd 3 "
                    "(socket_activation = true) instead of {socket}")
    ap.add_argument("--sn-conf", action="append", default=[],
                    metavar="LINE", help="extra line for socketnautd's "
                    "service block, e.g. 'control = false' (repeatable)")
    ap.add_argument("--sn-global", action="append", default=[],
                    metavar="LINE", help="A/B run: socketnautd as is against "
                    "socketnautd with this extra global line ({dir}: the "
                    "system's own temporary directory), e.g. 'access_log = "
                    "\"{dir}/access.log\"' (repeatable; ka, close and bulk "
                    "only; HAProxy and nginx are not run; writes "
                    "bench/RESULTS-ab.md unless --results)")
    ap.add_argument("--sn-service-b", action="append", default=[],
                    metavar="LINE", help="A/B run: an extra line for B's "
                    "service block only, e.g. 'proxy_protocol = v1' (the "
                    "backends of both then take a PROXY header or none)")
    ap.add_argument("--sn-b-binary", default=None, metavar="PATH",
                    help="A/B run: B is this socketnautd binary (another "
                    "build, e.g. an older commit's), with A's settings")
    ap.add_argument("--no-install", action="store_true")
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("--results", default=None)
    args = ap.parse_args()
    for name, lo, hi in (("rounds", 1, 50), ("ka_seconds", 1, 600),
                         ("seconds", 1, 600), ("conns", 1, 10000),
                         ("bulk_conns", 1, 10000), ("idle_conns", 1, 100000),
                         ("burst", 1, 100000), ("burst_size", 0, 1 << 26),
                         ("burst_delay", 0, 60000),
                         ("burst_ref_pool", 1, 1000),
                         ("burst_ref_small_pool", 0, 1000),
                         ("node_min", 0, 1000), ("node_max", 1, 1000),
                         ("ref_bufsize", 0, 1 << 24), ("tls_clients", 1, 64),
                         ("tls_idle", 1, 20000)):
        if not lo <= getattr(args, name) <= hi:
            ap.error("--%s: %d..%d" % (name.replace("_", "-"), lo, hi))
    if args.node_min > args.node_max:
        ap.error("--node-min is above --node-max")
    opts = {}
    for kv in args.sn_opt:
        k, sep, v = kv.partition("=")
        if not sep or not re.fullmatch(r"[a-z_][a-z0-9_]*", k.strip()) or \
                not v.strip():
            ap.error("--sn-opt %r: KEY=VALUE" % kv)
        opts[k.strip()] = v.strip()
    args.sn_opt = opts
    args.node_systems = set(filter(None, args.node_systems.split(",")))
    if args.node_systems - set(NODE_SYSTEMS):
        ap.error("--node-systems: unknown %s (known: %s)" % (
            ",".join(sorted(args.node_systems - set(NODE_SYSTEMS))),
            ",".join(NODE_SYSTEMS)))
    scen = set(args.only.split(",")) if args.only else set(DEFAULT_SCEN)
    unknown = scen - set(ALL_SCEN)
    if unknown:
        ap.error("--only: unknown %s (known: %s)" % (
            ",".join(sorted(unknown)), ",".join(ALL_SCEN)))
    args.scen = scen
    if "tls" in scen and scen != {"tls"}:
        ap.error("--only tls: runs alone")
    args.ab = bool(args.sn_global or args.sn_service_b or args.sn_b_binary)
    if args.ab and scen - {"ka", "close", "bulk"}:
        ap.error("--sn-global: only with --only ka, close and/or bulk")
    if args.results is None and scen == {"tls"}:
        args.results = os.path.join(BENCH, "RESULTS-tls.md")
    if args.results is None:
        args.results = os.path.join(BENCH, "RESULTS-ab.md") \
            if args.ab else RESULTS

    t_start = time.monotonic()

    def on_signal(sig, frame):
        raise KeyboardInterrupt("signal %d" % sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    if not os.access(SOCKETNAUTD, os.X_OK):
        raise BenchError("%s missing: run make first" % SOCKETNAUTD)
    ensure_tools(args)
    build_backend()
    nofile = raise_nofile(max(65536, 4 * args.idle_conns + 4096))
    if nofile < 2 * args.idle_conns + 1000:
        args.idle_conns = max(100, (nofile - 1000) // 2)
        log("RLIMIT_NOFILE %d: idle test lowered to %d connections" %
            (nofile, args.idle_conns))

    tmp = tempfile.mkdtemp(prefix="snbench-")
    bench = Bench(args, tmp)
    m = nginx_stream_module()
    if m is False:
        raise BenchError("nginx has no stream module "
                         "(apt-get install libnginx-mod-stream)")
    bench.nginx_module = m
    res = {}
    nres = {}
    notes = []
    load = []

    def add(key, target, value):
        res.setdefault(key, {}).setdefault(target, []).append(value)

    def nadd(key, target, value):
        nres.setdefault(key, {}).setdefault(target, []).append(value)

    try:
        if scen == {"tls"}:
            import tlsbench
            tlsbench.run(bench, args, sys.modules[__name__])
            return
        if scen & {"burst", "burst-node"} and not args.ab:
            warm_up_burst(bench, args)
        for rnd in range(args.rounds if not args.ab else 0):
            order = (TARGETS[rnd % len(TARGETS):] +
                     TARGETS[:rnd % len(TARGETS)])
            load.append(loadavg())
            log("round %d/%d: %s (load average %s)" % (
                rnd + 1, args.rounds, ", ".join(
                    order if scen - {"burst-node"} else
                    NODE_SYSTEMS[rnd % 5:] + NODE_SYSTEMS[:rnd % 5]),
                load[-1]))
            if scen & {"ka", "close", "bulk", "idle"}:
                # every system runs for the whole round; each scenario then
                # visits them back to back, so noise from other jobs on the
                # machine falls on all of them alike
                hs = {}
                try:
                    for t in order:
                        hs[t] = bench.start(t)
                    if "idle" in scen:
                        for t in order:
                            if t != "direct":
                                run_idle(bench, hs[t], t, rnd, args, add,
                                         notes)
                    for name in ("ka", "close", "bulk"):
                        if name not in scen:
                            continue
                        for t in order:
                            run_scenario(hs[t], t, name, rnd, args, add,
                                         notes)
                finally:
                    for t in reversed(list(hs)):
                        bench.stop(hs[t])
            if "burst" in scen:
                border = [t for t in order if t not in ("direct", "handoff")]
                for t in border:
                    if t == "socketnautd":
                        h = bench.start(t, delay=args.burst_delay,
                                        autoscale=(10, 100))
                    else:
                        h = bench.start(t, pool=args.burst_ref_pool,
                                        delay=args.burst_delay)
                    try:
                        if h["notify"]:
                            h["notify"].reset_peaks()
                        r = burst_test(h["port"], args.burst, args.burst_size,
                                       timeout=60)
                        add("burst_wall", t, r["wall"])
                        add("burst_err", t, r["errors"])
                        extra = ""
                        if h["notify"]:
                            time.sleep(0.1)
                            add("burst_peak", t, h["notify"].max_online)
                            extra = ", peak %d workers online" % \
                                h["notify"].max_online
                        else:
                            add("burst_peak", t, args.burst_ref_pool)
                        log("  %-11s burst %.2f s, %d errors%s%s" % (
                            t, r["wall"], r["errors"],
                            " %r" % r["kinds"] if r["kinds"] else "", extra))
                        if r["errors"]:
                            notes.append("round %d: %s: burst errors %r" % (
                                rnd + 1, LABEL[t], r["kinds"]))
                    finally:
                        bench.stop(h)
            if "burst-node" in scen:
                norder = NODE_SYSTEMS[rnd % 5:] + NODE_SYSTEMS[:rnd % 5]
                if scen - {"burst-node"}:
                    load[-1] += " (before burst-node: %s)" % loadavg()
                for t in norder:
                    if t.endswith("-10") and args.burst_ref_small_pool == 0:
                        continue
                    if args.node_systems and t not in args.node_systems:
                        continue
                    run_burst_node(bench, t, rnd, args, nadd, notes)
        if args.ab:
            run_ab(bench, args, add, notes, load)
        small = {}
        if "burst" in scen and args.burst_ref_small_pool > 0 and \
                not args.ab:
            for t in ["haproxy", "nginx"]:
                h = bench.start(t, pool=args.burst_ref_small_pool,
                                delay=args.burst_delay)
                try:
                    r = burst_test(h["port"], args.burst, args.burst_size,
                                   timeout=120)
                    small[t] = r
                    log("  %-11s burst, fixed pool of %d: %.2f s, %d errors"
                        % (t, args.burst_ref_small_pool, r["wall"],
                           r["errors"]))
                finally:
                    bench.stop(h)
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        bench.procs.stop_all()
        raise
    finally:
        bench.procs.stop_all()
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log("kept " + tmp)

    elapsed = time.monotonic() - t_start
    lines = ["# socketnautd benchmark results", "",
             "Written by `make bench` (bench/run.py); see bench/README for "
             "what each row measures.", "",
             "## Machine", ""]
    for k, v in machine():
        lines.append("- %s: %s" % (k, v))
    if res and args.ab:
        lines += ["", "## A/B: socketnautd against socketnautd with %s "
                  "(medians of %d rounds, order swapped each round)" % (
                      "; ".join(["`%s`" % g for g in
                                 args.sn_global + args.sn_service_b] +
                                (["the binary `%s`" % args.sn_b_binary]
                                 if args.sn_b_binary else [])),
                      args.rounds), "", ab_table(res, args), "",
                  "Settings: wrk -t1; keep-alive -c%d -d%ds on `GET /`; "
                  "close -c%d -d%ds `-H 'Connection: close'`; bulk -c%d "
                  "-d%ds; both with `worker_count = 2` of bench-backend." % (
                      args.conns, args.ka_seconds, args.conns, args.seconds,
                      args.bulk_conns, args.seconds)]
    elif res:
        head, rows = build_table(res, args)
        lines += ["", "## Results (medians of %d alternating rounds)" %
                  args.rounds, "",
                  md_table(head, rows), ""]
        lines.append(
            "Ratios are socketnautd ÷ reference: above 1 is better for ↑ "
            "rows, below 1 is better for ↓ rows; \"best\" is the better of "
            "HAProxy and nginx.  All systems front the same bench-backend: "
            "socketnautd with `worker_count = 2`, HAProxy/nginx with 2 "
            "backend processes on Unix sockets, direct = 2 backend processes "
            "sharing one TCP port (SO_REUSEPORT).")
        lines.append("")
        lines.append(
            "Settings: wrk -t1; keep-alive -c%d -d%ds --latency on `GET /`; "
            "close -c%d -d%ds `-H 'Connection: close'`; bulk -c%d -d%ds "
            "`GET /bytes?n=%d`; idle %d connections from one Python client; "
            "burst %d concurrent `POST /echo` of %d bytes, backends "
            "`--delay %d`, socketnautd min_workers = 10, max_workers = 100, "
            "HAProxy/nginx a fixed pool of %d backends (every round)." % (
                args.conns, args.ka_seconds, args.conns, args.seconds,
                args.bulk_conns, args.seconds, BULK_SIZE, args.idle_conns,
                args.burst, args.burst_size, args.burst_delay,
                args.burst_ref_pool))
    if small:
        lines += ["", "Burst with a fixed pool of %d backends (no "
                  "autoscaling, one run each): %s." % (
                      args.burst_ref_small_pool, "; ".join(
                          "%s %.2f s, %d errors" % (LABEL[t], r["wall"],
                                                   r["errors"])
                          for t, r in small.items()))]
    if args.socket_activation:
        lines += ["", "socketnautd ran with `socket_activation = true` "
                  "(--socket-activation)."]
    if args.sn_conf:
        lines += ["", "socketnautd service block additions (--sn-conf): " +
                  "; ".join("`%s`" % c for c in args.sn_conf) + "."]
    if nres:
        lines += ["", "## Burst with Node workers (burst-node, medians of "
                  "%d alternating rounds)" % args.rounds, "",
                  "%d concurrent `POST /echo` of %d bytes; every worker is "
                  "bench/node-worker.mjs (plain Node HTTP server, busy-waits "
                  "%d ms per request) on a Unix socket.  socketnautd: "
                  "min_workers = %d, max_workers = %d, command `node "
                  "node-worker.mjs --socket {socket}`%s.  HAProxy/nginx: a "
                  "fixed pool of Node processes started before the burst, "
                  "as in the C burst." % (
                      args.burst, args.burst_size, args.burst_delay,
                      args.node_min, args.node_max,
                      "; service options (--sn-opt): " + "; ".join(
                          "`%s = %s`" % kv for kv in args.sn_opt.items())
                      if args.sn_opt else ""), "",
                  node_table(nres, args), "",
                  "CPU is user + system time from /proc (schedstat) of the "
                  "Node processes only.  A start's CPU is what the process "
                  "used from exec until its socket file appeared (bind; "
                  "listen follows in the same tick), read every 5 ms by a "
                  "separate sampler process for socketnautd, in the driver "
                  "for the pools started in advance.  \"CPU of all workers "
                  "during the burst\" includes those starts and the busy-"
                  "waiting, which runs until each 100 ms of wall time has "
                  "passed, so it is about cores × wall time whenever "
                  "workers are busy: it is not work done."]
    if args.ref_bufsize:
        lines += ["", "HAProxy `tune.bufsize` and nginx `proxy_buffer_size` "
                  "set to %d bytes (--ref-bufsize)." % args.ref_bufsize]
    if sys.argv[1:]:
        lines += ["", "Options: `%s`." % " ".join(
            shlex.quote(a) for a in sys.argv[1:])]
    lines += ["", "Load average (1/5/15 min) at the start of each round: "
              "%s; at the end: %s.  The machine may be shared: the "
              "per-round figures below show how noisy it was." % (
                  "; ".join(load), loadavg())]
    if res and not args.ab:
        lines += ["", "## Every round (round 1 / round 2 / ...)", "",
                  spread_table(res), ""]
    else:
        lines.append("")
    if notes:
        lines += ["## Errors seen", ""] + ["- " + n for n in notes] + [""]
    lines.append("Whole run: %.0f s." % elapsed)
    text = "\n".join(lines) + "\n"
    with open(args.results, "w") as f:
        f.write(text)
    print(text)
    log("wrote %s in %.0f s" % (os.path.relpath(args.results), elapsed))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sample-workers"] and len(sys.argv) == 4:
        sys.exit(sampler_main(int(sys.argv[2]), sys.argv[3]))
    try:
        sys.exit(main())
    except BenchError as e:
        log("bench: " + str(e))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
