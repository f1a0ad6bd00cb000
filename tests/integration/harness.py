"""Helpers for the socketnautd integration tests (Python 3 standard library only).

The tests start the real daemon (env SOCKETNAUTD, default build/socketnautd) with real worker
processes (env SN_BUILD, default build, is put first in PATH so `socketnaut-hello` is found),
each in its own temporary directory, on free loopback ports.  Every wait is bounded in count
and in time.  SN_DEBUG=0 runs the daemon without -d; SN_KEEP=1 keeps the temp directories.
"""

import atexit
import os
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _path_from_env(name, default):
    value = os.environ.get(name)
    if value:
        return os.path.abspath(value)
    return os.path.join(ROOT, default)


DAEMON = _path_from_env("SOCKETNAUTD", "build/socketnautd")
BUILD = _path_from_env("SN_BUILD", "build")
HELLO = os.path.join(BUILD, "socketnaut-hello")
CTL = os.path.join(BUILD, "socketnautctl")
PYWORKER = os.path.join(HERE, "pyworker.py")
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
DEBUG = os.environ.get("SN_DEBUG", "1") != "0"
KEEP = os.environ.get("SN_KEEP", "0") == "1"

DURATION_KEYS = {
    "shutdown_timeout", "kill_timeout", "workers_checking_interval", "connect_timeout",
    "ready_timeout", "queue_timeout", "idle_timeout", "stall_timeout", "interval", "timeout",
}

# What AddressSanitizer, LeakSanitizer and UBSan print, in the daemon's or a worker's output.
SANITIZER_REPORT = re.compile(r"==\d+==ERROR: |runtime error: |SUMMARY: \w+Sanitizer")

# Process groups of every daemon started, killed at exit even if a test runner is interrupted.
_live_groups = set()


@atexit.register
def _kill_leftovers():
    for pgid in list(_live_groups):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# small utilities

def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Poll predicate() every `interval` s until it returns a true value, at most `timeout` s.
    Returns that value; raises AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))


def load_until(port, until, timeout=10, threads=2):
    """GET / on port from `threads` clients, one after another, until time.monotonic() passes
    `until` (a flood elsewhere is meant to leave them served).  Returns (errors, slowest
    request in s, requests done)."""
    import threading
    errors, slowest, done = [], [0.0], [0]

    def client():
        while time.monotonic() < until:
            start = time.monotonic()
            try:
                r = http(port, path="/", timeout=timeout)
                if r.status != 200:
                    errors.append(r.status)
                done[0] += 1
            except Exception as e:  # noqa: BLE001 - any failure counts
                errors.append(repr(e))
            slowest[0] = max(slowest[0], time.monotonic() - start)
            time.sleep(0.01)
    clients = [threading.Thread(target=client) for _ in range(threads)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(until - time.monotonic() + 3 * timeout)
    return errors, slowest[0], done[0]


def exhaust_fds(d, n=100):
    """Open n connections to d's first port without waiting for them, until the master (run
    with a low nofile) says it is out of descriptors.  Returns the sockets: close them to
    give the descriptors back."""
    held = []
    for _ in range(n):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", d.port))
        except BlockingIOError:
            pass
        held.append(c)
    wait_until(lambda: "out of file descriptors" in d.log(), 10,
               what="the master out of descriptors")
    return held


_ports_given = set()


def free_port(family=socket.AF_INET):
    """A TCP port free right now on the loopback address of `family`, and not one this
    process handed out before: the kernel may pick the same port for two binds in a row,
    and two services of one config then got the same port."""
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    for _ in range(100):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            break
    _ports_given.add(port)
    return port


def ipv6_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def port_listening(port, host="127.0.0.1"):
    """True if a socket listens on host:port, read from /proc/net/tcp{,6} (no connection is
    made: a probe connection would be a client to the daemon); None if /proc cannot tell."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    packed = socket.inet_pton(family, host)
    if family == socket.AF_INET:
        want = packed[::-1].hex().upper()
    else:  # four 32-bit words, each in host (little endian) order
        want = "".join(packed[i:i + 4][::-1].hex().upper() for i in range(0, 16, 4))
    want_any = "0" * len(want)
    try:
        with open("/proc/net/tcp6" if family == socket.AF_INET6 else "/proc/net/tcp") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        addr, _, hexport = fields[1].partition(":")
        if fields[3] == "0A" and int(hexport, 16) == port and addr in (want, want_any):
            return True
    return False


def port_open(port, host="127.0.0.1", timeout=0.5):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def random_bytes(n, seed):
    return random.Random(seed).randbytes(n)


# ---------------------------------------------------------------------------------------------
# /proc

def proc_state(pid):
    """State letter of pid ('R', 'S', 'Z', ...) or None if it does not exist."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()[0]


def proc_comm(pid):
    """The command name of pid (/proc/PID/comm), or None."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def proc_alive(pid):
    """True if pid exists and is not a zombie."""
    state = proc_state(pid)
    return state is not None and state not in ("Z", "X")


def children(pid):
    """Live (non-zombie) child pids of pid, from /proc/PID/task/*/children, else /proc/*/stat."""
    kids = set()
    task_dir = "/proc/%d/task" % pid
    try:
        tids = os.listdir(task_dir)
    except OSError:
        return []
    have_children_file = False
    for tid in tids:
        try:
            with open("%s/%s/children" % (task_dir, tid)) as f:
                kids.update(int(x) for x in f.read().split())
            have_children_file = True
        except OSError:
            pass
    if not have_children_file:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    data = f.read()
            except OSError:
                continue
            fields = data[data.rindex(")") + 2:].split()
            if int(fields[1]) == pid:
                kids.add(int(entry))
    return sorted(k for k in kids if proc_alive(k))


def descendants(pid):
    result, todo = [], [pid]
    for _ in range(10000):
        if not todo:
            break
        for kid in children(todo.pop()):
            result.append(kid)
            todo.append(kid)
    return result


def cpu_seconds(pid):
    """User + system CPU time consumed by pid so far."""
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


# ---------------------------------------------------------------------------------------------
# configuration

class Raw(str):
    """A configuration value written as is (not quoted)."""


def render_value(key, value):
    if isinstance(value, Raw) or (key in DURATION_KEYS and isinstance(value, str)):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "{ " + ", ".join(render_value(None, v) for v in value) + " }"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(global_opts, services):
    """Configuration text: global options (dict) then one section per service (dicts with a
    'name' key; values: str quoted, durations/Raw bare, bool, int, list)."""
    lines = []
    for key, value in global_opts.items():
        if value is not None:
            lines.append("%s = %s" % (key, render_value(key, value)))
    for svc in services:
        lines.append('service "%s" {' % svc["name"])
        for key, value in svc.items():
            if key in ("name", "port") or value is None:
                continue
            if isinstance(value, dict):  # a subsection, e.g. health_check
                lines.append("    %s {" % key)
                lines += ["        %s = %s" % (k, render_value(k, v)) for k, v in value.items()]
                lines.append("    }")
                continue
            lines.append("    %s = %s" % (key, render_value(key, value)))
        lines.append("}")
    return "\n".join(lines) + "\n"


def daemon_env(extra=None):
    env = dict(os.environ)
    env["PATH"] = BUILD + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    for name in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                 "RUNTIME_DIRECTORY", "SOCKETNAUT_SOCKET", "SOCKETNAUT_SERVICE",
                 "SOCKETNAUT_WORKER", "PORT"):
        env.pop(name, None)
    # socketnaut-hello's routes that stall, crash or read a worker
    env["HELLO_TEST_ROUTES"] = "1"
    env.update(extra or {})
    return env


def run_check(config_path, timeout=10, extra_args=()):
    """Run `socketnautd -t -c FILE`; returns (exit status, stdout, stderr)."""
    p = subprocess.run([DAEMON, "-t", "-c", config_path] + list(extra_args),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                       env=daemon_env(), cwd=os.path.dirname(config_path))
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


# ---------------------------------------------------------------------------------------------
# the daemon

class Daemon:
    """One socketnautd process with its config file and log file in `tmpdir`."""

    def __init__(self, tmpdir, services, global_opts=None, name="socketnaut"):
        self.tmpdir = tmpdir
        self.services = []
        self.ports = {}
        for svc in services:
            svc = dict(svc)
            if "listen" not in svc:
                port = free_port()
                svc["listen"] = ["127.0.0.1:%d" % port]
                svc["port"] = port
            self.ports[svc["name"]] = svc.get("port")
            self.services.append(svc)
        self.port = self.services[0].get("port") if self.services else None
        opts = {"runtime_dir": os.path.join(tmpdir, "run"), "shutdown_timeout": "5s",
                "kill_timeout": "2s"}
        opts.update(global_opts or {})
        self.runtime_dir = opts.get("runtime_dir")
        self.admin_socket = opts.get("admin_socket") or (
            os.path.join(self.runtime_dir, "admin.sock") if self.runtime_dir else None)
        self.config_path = os.path.join(tmpdir, name + ".conf")
        self.log_path = os.path.join(tmpdir, name + ".log")
        with open(self.config_path, "w") as f:
            f.write(render_config(opts, self.services))
        self.proc = None
        self.pid = None

    def start(self, nofile=None, env=None, debug=DEBUG, preexec=None):
        """Start the daemon (foreground, own session), stdout and stderr to the log file;
        `preexec` runs in the child before exec (e.g. to set groups or a cgroup)."""
        args = [DAEMON, "-c", self.config_path] + (["-d"] if debug else [])
        extra = preexec

        def preexec():
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            if extra is not None:
                extra()

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=daemon_env(env), cwd=self.tmpdir,
                                         start_new_session=True, preexec_fn=preexec)
        self.pid = self.proc.pid
        _live_groups.add(self.pid)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_listening(self, port=None, host="127.0.0.1", timeout=10):
        """Poll every 50 ms, at most `timeout` s, until the port listens (seen in /proc, else
        by connecting)."""
        port = port or self.port
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / 0.05) + 2):
            if not self.alive():
                raise AssertionError("socketnautd exited with status %s before listening"
                                     % self.proc.returncode)
            listening = port_listening(port, host)
            if listening is None:
                listening = port_open(port, host, timeout=0.2)
            if listening:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        raise AssertionError("socketnautd did not listen on %s port %d within %d s"
                             % (host, port, timeout))

    def workers(self):
        """Live child processes of the daemon (its workers, not its keeper), sorted."""
        return [p for p in children(self.pid) if proc_comm(p) != "sn-keeper"] \
            if self.alive() else []

    def wait_workers(self, count, timeout=10, what=None):
        """Wait (bounded) until the daemon has exactly `count` workers; returns their pids."""
        seen = []

        def check():
            seen[:] = self.workers()
            return len(seen) == count

        try:
            wait_until(check, timeout, what=what or "%d workers" % count)
        except AssertionError as e:
            raise AssertionError("%s; workers last seen: %s" % (e, seen)) from None
        return list(seen)

    def wait_ready(self, count, timeout=10):
        """Wait (bounded) until `count` workers are ready (asked through the admin socket),
        and there are `count` workers; returns their pids.  (Workers that exist are not yet
        ready: a client that comes earlier is queued or given to the ready ones.)"""
        wait_until(lambda: len(self.ready_pids()) >= count, timeout,
                   what="%d workers ready" % count)
        return self.wait_workers(count, timeout)

    def ctl(self, *args, timeout=30, user=None, group=None, extra_groups=None, ctl=None):
        """Run socketnautctl against this daemon's admin socket; returns the
        CompletedProcess (returncode, stdout, stderr as text)."""
        where = ["-s", self.admin_socket] if self.admin_socket != "off" else []
        return subprocess.run([ctl or CTL] + where + list(args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout,
                              user=user, group=group, extra_groups=extra_groups)

    def status(self, timeout=30):
        """The daemon's state: `socketnautctl status -j`, parsed (STATUS-SCHEMA.md)."""
        import json
        p = self.ctl("-j", "status", timeout=timeout)
        if p.returncode != 0:
            raise AssertionError("socketnautctl status failed (%d): %s"
                                 % (p.returncode, p.stderr.strip()))
        return json.loads(p.stdout)

    def service(self, name=None, timeout=30):
        """One service's entry of status() (the first one without a name)."""
        services = self.status(timeout)["services"]
        for svc in services:
            if name is None or svc["name"] == name:
                return svc
        raise AssertionError("no service %r in status: %s" % (name, services))

    def ready_pids(self, name=None, generation=None):
        """Pids of the ready workers (of one service, of one generation), from status();
        [] while the daemon does not answer."""
        if not self.alive():
            return []
        try:
            services = self.status()["services"]
        except (AssertionError, ValueError, subprocess.TimeoutExpired):
            return []
        return sorted(w["pid"] for svc in services for w in svc["workers"]
                      if (name is None or svc["name"] == name) and w["state"] == "ready"
                      and (generation is None or w["generation"] == generation))

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout=15, sig=signal.SIGTERM):
        """Send SIGTERM and wait (bounded); returns the exit status (None if it did not exit)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        return self.proc.returncode

    def kill_all(self):
        """SIGKILL the daemon, its descendants and its process group; never raises."""
        if self.proc is None:
            return
        pids = [self.pid] + descendants(self.pid) if self.proc.poll() is None else []
        if pids:
            # The master first, so that its keeper removes the cgroups it made (bounded).
            keepers = [p for p in pids if proc_comm(p) == "sn-keeper"]
            try:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(5)
                wait_until(lambda: not any(proc_alive(p) for p in keepers), 2)
            except (OSError, AssertionError, subprocess.TimeoutExpired):
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        _live_groups.discard(self.pid)


class DaemonTest(unittest.TestCase):
    """Base class: a temp directory per test, daemons started through start_daemon() are
    killed (with their workers) in cleanup even on failure, and their logs are printed to
    stderr when the test failed."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sn-it-", dir="/tmp" if os.path.isdir("/tmp") else None)
        self.daemons = []
        self.users = []  # throwaway_user(): removed once the daemons are gone
        self.saved_logs = []
        self.addCleanup(self._cleanup)
        for binary, var in ((DAEMON, "SOCKETNAUTD"), (HELLO, "SN_BUILD")):
            if not os.access(binary, os.X_OK):
                self.fail("%s not found (run make, or set %s)" % (binary, var))

    def _cleanup(self):
        reports = []
        for d in self.daemons:
            d.kill_all()
            text = d.log()
            self.saved_logs.append((d.log_path, text))
            if SANITIZER_REPORT.search(text):
                reports.append(d.log_path)
        for name in self.users:
            remove_user(name)
        if not KEEP:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if reports:
            print_logs(self.saved_logs)
            raise AssertionError("sanitizer report in %s" % ", ".join(reports))

    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result is not None else 0
        outcome = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before:
            print_logs(self.saved_logs)
        return outcome

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def write_file(self, name, content, mode=0o644):
        p = self.path(name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
        os.chmod(p, mode)
        return p

    def start_daemon(self, services, global_opts=None, wait=True, nofile=None, env=None,
                     name="socketnaut", min_ready=None, preexec=None):
        """Write the config, start socketnautd, wait until every service's port answers."""
        d = Daemon(self.tmp, services, global_opts, name=name)
        self.daemons.append(d)
        d.start(nofile=nofile, env=env, preexec=preexec)
        if wait:
            for svc in d.services:
                if svc.get("port"):
                    d.wait_listening(svc["port"])
            if min_ready is not None:
                d.wait_workers(min_ready)
        return d

    def stop_daemon(self, d, timeout=15):
        rc = d.stop(timeout)
        self.assertIsNotNone(rc, "socketnautd did not exit within %d s of SIGTERM" % timeout)
        self.assertEqual(rc, 0, "socketnautd exit status after SIGTERM")
        return rc


def throwaway_user(testcase, prefix="snt"):
    """Create a system user (and its group) that exists only for this test: removed in
    cleanup even when the test fails.  Needs root; returns its pwd entry."""
    import pwd
    for attempt in range(5):
        name = "%s%d%04d" % (prefix, os.getpid() % 100000, random.randrange(10000))
        p = subprocess.run(["useradd", "--system", "--no-create-home", "--user-group",
                            "--shell", "/usr/sbin/nologin", name],
                           capture_output=True, timeout=30)
        if p.returncode != 9 or attempt == 4:  # 9: the name is taken (a run killed early)
            break
    if p.returncode != 0:
        raise AssertionError("useradd %s: exit %d: %s" % (name, p.returncode,
                                                         p.stderr.decode().strip()))
    # After the test's daemons and their workers are gone (DaemonTest's cleanup, which
    # was registered first and so runs last), else userdel finds the user still in use.
    if hasattr(testcase, "users"):
        testcase.users.append(name)
    else:
        testcase.addCleanup(remove_user, name)
    return pwd.getpwnam(name)


def remove_user(name):
    """userdel, again for a moment while a process of the user is still going away (exit
    8), so that no user outlives the test that made it."""
    for _ in range(20):
        if subprocess.run(["userdel", name], capture_output=True,
                          timeout=30).returncode != 8:
            return
        time.sleep(0.1)


def public_copy(testcase, path):
    """Copy an executable into the test's directory, made traversable by every user, so that
    workers running as another user can execute it even when the source tree lives under a
    directory only root can enter.  Returns the copy's path."""
    os.chmod(testcase.tmp, 0o755)
    dest = os.path.join(testcase.tmp, os.path.basename(path))
    shutil.copy2(path, dest)
    os.chmod(dest, 0o755)
    return dest


def print_logs(saved_logs, max_chars=20000):
    for path, text in saved_logs:
        if len(text) > max_chars:
            text = "[... %d characters cut ...]\n" % (len(text) - max_chars) + text[-max_chars:]
        sys.stderr.write("----- daemon log %s -----\n%s\n----- end of log -----\n" % (path, text))
    sys.stderr.flush()


def hello(**kw):
    """Service dict for the bundled example worker on its private Unix socket."""
    svc = {"name": "web", "command": "socketnaut-hello --socket {socket}"}
    svc.update(kw)
    return svc


# ---------------------------------------------------------------------------------------------
# HTTP over raw sockets

class IncompleteResponse(Exception):
    """The connection ended before a complete response; .data holds what was received."""

    def __init__(self, msg, data=b""):
        super().__init__(msg)
        self.data = data


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode(errors="replace")

    def __repr__(self):
        return "<Response %d %r %d bytes>" % (self.status, self.reason, len(self.body))


def connect(port, host="127.0.0.1", timeout=10):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def build_request(method, path, body=b"", headers=None, keepalive=False):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: localhost"]
    hdrs = {"Connection": "keep-alive" if keepalive else "close"}
    if body or method in ("POST", "PUT"):
        hdrs["Content-Length"] = str(len(body))
    hdrs.update(headers or {})
    lines += ["%s: %s" % kv for kv in hdrs.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Conn:
    """One client connection; request() can be called again when the server keeps it alive."""

    def __init__(self, port, host="127.0.0.1", timeout=10, sock=None):
        self.timeout = timeout
        self.sock = sock or connect(port, host, timeout)
        self.buf = b""
        self.eof = False

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _deadline(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("response not complete within %s s" % self.timeout)
        self.sock.settimeout(left)

    def fill(self, deadline):
        """Read more bytes into buf; False at EOF."""
        if self.eof:
            return False
        self._deadline(deadline)
        data = self.sock.recv(262144)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def send(self, data, deadline=None):
        """Send all of data while reading whatever the peer sends meanwhile into buf, so a
        server that answers before reading everything cannot deadlock us."""
        deadline = deadline or time.monotonic() + self.timeout
        view = memoryview(data)
        self.sock.setblocking(False)
        sel = selectors.DefaultSelector()
        try:
            sel.register(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while view:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("could not send the request within %s s" % self.timeout)
                for _, events in sel.select(min(left, 1.0)):
                    # A TLS socket (ssl.SSLSocket): readable bytes may be less than a
                    # record, and a send may wait for a read (ssl.SSLWant*Error).
                    try:
                        if events & selectors.EVENT_READ and not self.eof:
                            chunk = self.sock.recv(262144)
                            if chunk:
                                self.buf += chunk
                            else:
                                self.eof = True
                                sel.modify(self.sock, selectors.EVENT_WRITE)
                        if events & selectors.EVENT_WRITE:
                            n = self.sock.send(view[:262144])
                            view = view[n:]
                    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                        continue
        finally:
            sel.close()
            self.sock.setblocking(True)
            self.sock.settimeout(self.timeout)

    def read_response(self, method="GET", deadline=None):
        deadline = deadline or time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.buf:
            if not self.fill(deadline):
                raise IncompleteResponse("connection closed before the response head", self.buf)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise AssertionError("bad status line %r" % lines[0])
        status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked(deadline)
        elif "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                if not self.fill(deadline):
                    raise IncompleteResponse("connection closed after %d of %d body bytes"
                                             % (len(self.buf), n), self.buf)
            body, self.buf = self.buf[:n], self.buf[n:]
        else:
            while self.fill(deadline):
                pass
            body, self.buf = self.buf, b""
        return Response(status, reason, headers, body)

    def _read_chunked(self, deadline):
        body = b""
        for _ in range(1000000):
            while b"\r\n" not in self.buf:
                if not self.fill(deadline):
                    raise IncompleteResponse("connection closed in chunked body", body)
            size_line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(self.buf) < size + 2:
                if not self.fill(deadline):
                    raise IncompleteResponse("connection closed in chunked body", body)
            body += self.buf[:size]
            self.buf = self.buf[size + 2:]
            if size == 0:
                return body
        raise AssertionError("too many chunks")

    def request(self, method="GET", path="/", body=b"", headers=None, keepalive=False):
        deadline = time.monotonic() + self.timeout
        self.send(build_request(method, path, body, headers, keepalive), deadline)
        return self.read_response(method, deadline)


def http(port, method="GET", path="/", body=b"", headers=None, host="127.0.0.1", timeout=10):
    """One request on a new connection (Connection: close); returns a Response."""
    with Conn(port, host, timeout) as c:
        return c.request(method, path, body, headers)


def http_ok(testcase, port, path="/", method="GET", body=b"", host="127.0.0.1", timeout=10):
    r = http(port, method, path, body, host=host, timeout=timeout)
    testcase.assertEqual(r.status, 200, "%s %s answered %r: %r" % (method, path, r, r.body[:200]))
    return r


HELLO_RE = re.compile(rb"worker (\d+) pid (\d+)")


def hello_identity(body):
    """(index, pid) from the example worker's GET / text."""
    m = HELLO_RE.search(body)
    if not m:
        raise AssertionError("no 'worker N pid P' in %r" % body[:200])
    return int(m.group(1)), int(m.group(2))
