"""The filesystem is not trusted: socketnautd never connects through a path a worker can
replace (its sockets are pinned by inode), never uses a runtime directory others can write,
and never follows a symlink in its runtime directory (issue 7, items 1 to 3).

The bait is a Unix socket only root can reach (0600 in a 0700 directory), served by the
test itself: it records every connection and the connecting process's uid (SO_PEERCRED).
"""

import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
import unittest

import harness

AGENT = os.path.join(harness.ROOT, "agents", "python", "socketnaut_agent.py")

# A worker run as the throwaway user.  Slot 0 is the attacker (mode in $EVIL_MODE), every
# other slot a plain HTTP server on its socket.  Modes: "symlink" (its socket is a symlink to
# the bait from the start), "swap" (serves one request, then replaces its socket by that
# symlink and writes $SWAPPED), "activation-swap" (the same on the socket the master made),
# "agent" (backend agent: reports a symlink in its directory as its address).
WORKER = r'''
import os, socket, socketserver, sys, threading, time
from http.server import BaseHTTPRequestHandler
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

swapped = []

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"served by slot %s\n" % os.environ["SOCKETNAUT_WORKER"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if evil and mode in ("swap", "activation-swap") and not swapped:
            swapped.append(1)
            os.unlink(path)
            os.symlink(bait, path)
            with open(os.environ["SWAPPED"], "w") as f:
                f.write("swapped\n")
    def address_string(self):
        return "unix"
    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

mode, bait = os.environ["EVIL_MODE"], os.environ["BAIT"]
evil = os.environ["SOCKETNAUT_WORKER"] == "0"
if mode == "agent":
    import socketnaut_agent
    agent = socketnaut_agent.ServiceAgent()
    path = os.path.join(os.environ["SOCKDIR"], "w%d.sock" % os.getpid())
    if evil:
        os.symlink(bait, path)
        agent.ready(address=path)
        time.sleep(120)
        sys.exit(0)
    server = Server(path, Handler)
    agent.ready(address=path)
    server.serve_forever()
path = os.environ["SOCKETNAUT_SOCKET"]
if evil and mode == "symlink":
    os.symlink(bait, path)
    time.sleep(120)
    sys.exit(0)
if mode == "activation-swap":
    server = Server(path, Handler, bind_and_activate=False)
    server.socket = socket.socket(fileno=3)
else:
    server = Server(path, Handler)
server.serve_forever()
'''


class Bait:
    """A root-only Unix socket that records who connects (uid from SO_PEERCRED)."""

    def __init__(self, directory):
        os.makedirs(directory, mode=0o700)
        os.chmod(directory, 0o700)
        self.path = os.path.join(directory, "root.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o600)
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.peers = []
        self.done = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        for _ in range(100000):
            if self.done:
                return
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                   struct.calcsize("3i"))
            self.peers.append(struct.unpack("3i", cred))
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nbait\n")
            except OSError:
                pass
            conn.close()

    def close(self):
        self.done = True
        self.thread.join(5)
        self.sock.close()


@unittest.skipUnless(os.geteuid() == 0, "needs root: a throwaway user and a root-only socket")
class WorkerSocketTest(harness.DaemonTest):
    """Item 1: a worker that puts a symlink where its socket should be reaches nothing."""

    def setUp(self):
        super().setUp()
        self.user = harness.throwaway_user(self)
        self.hello = harness.public_copy(self, harness.HELLO)
        self.worker = self.write_file("evil_worker.py", WORKER, 0o755)
        harness.public_copy(self, AGENT)
        self.bait = Bait(self.path("secret"))
        self.addCleanup(self.bait.close)
        os.mkdir(self.path("out"))
        os.chown(self.path("out"), self.user.pw_uid, self.user.pw_gid)

    def service(self, mode, **kw):
        svc = {"name": "web", "worker_count": 2, "user": self.user.pw_name,
               "command": [harness.PYTHON, self.worker], "ready_timeout": "10s",
               "env": ["EVIL_MODE=" + mode, "BAIT=" + self.bait.path,
                       "SOCKDIR=" + self.path("run", "web"),
                       "SWAPPED=" + self.path("out", "swapped")]}
        svc.update(kw)
        return svc

    def requests(self, port, n):
        """n requests, one connection each: (served bodies, clean closes)."""
        served, closed = [], 0
        for _ in range(n):
            try:
                r = harness.http(port, timeout=20)
            except (harness.IncompleteResponse, ConnectionResetError):
                closed += 1
                continue
            self.assertEqual(r.status, 200, r.body)
            served.append(r.body)
        return served, closed

    def wait_log(self, d, pattern):
        harness.wait_until(lambda: re.search(pattern, d.log()), 15, what="log /%s/" % pattern)

    def assert_bait_untouched(self):
        self.assertEqual(self.bait.peers, [],
                         "the master connected to the root-only socket (pid, uid, gid)")

    def test_symlink_instead_of_socket_is_refused_and_never_connected(self):
        d = self.start_daemon([self.service("symlink")])
        harness.wait_until(d.ready_pids, 15, what="a ready worker")
        served, _ = self.requests(d.port, 6)
        self.assert_bait_untouched()
        self.assertTrue(served, "no request served by the healthy worker")
        # by a real worker (slot 1, or slot 0's replacement once ready), never the bait
        self.assertTrue(all(b.startswith(b"served by slot ") for b in served), served)
        self.wait_log(d, r"service web: worker \d+: .*/run/web/\d+-\d+\.sock is a "
                         r"symbolic link, not a socket: refusing it; killing it")
        self.stop_daemon(d)

    def test_socket_swapped_for_symlink_after_ready_is_not_followed(self):
        d = self.start_daemon([self.service("swap")], min_ready=2)
        self.swap_after_serving(d)
        self.stop_daemon(d)

    def swap_after_serving(self, d):
        for _ in range(150):  # until slot 0 is ready and served once: at most ~15 s
            self.requests(d.port, 1)
            if os.path.exists(self.path("out", "swapped")):
                break
            time.sleep(0.1)
        self.assertTrue(os.path.exists(self.path("out", "swapped")), "slot 0 never served")
        served, closed = self.requests(d.port, 8)
        self.assert_bait_untouched()
        self.assertEqual(closed, 0)
        # Slot 0 keeps serving on its socket: the pinned inode, not the symlink.
        self.assertTrue(any(b"slot 0" in body for body in served), served)

    def test_activation_socket_is_handed_to_the_worker_user(self):
        d = self.start_daemon([harness.hello(worker_count=1, user=self.user.pw_name,
                                             socket_activation=True,
                                             command=self.hello + " --socket {socket}")],
                              min_ready=1)
        harness.http_ok(self, d.port)
        (sock,) = [n for n in os.listdir(self.path("run", "web")) if n.endswith(".sock")]
        st = os.lstat(self.path("run", "web", sock))
        self.assertTrue(stat.S_ISSOCK(st.st_mode))
        self.assertEqual((st.st_uid, st.st_gid), (self.user.pw_uid, self.user.pw_gid))
        self.stop_daemon(d)

    def test_activation_socket_swapped_for_symlink_is_not_followed(self):
        d = self.start_daemon([self.service("activation-swap", socket_activation=True)],
                              min_ready=2)
        self.swap_after_serving(d)
        self.stop_daemon(d)

    def test_agent_reporting_a_symlink_is_refused_and_never_connected(self):
        d = self.start_daemon([self.service("agent", backend="agent")])
        harness.wait_until(d.ready_pids, 15, what="a ready worker")
        served, _ = self.requests(d.port, 6)
        self.assert_bait_untouched()
        self.assertTrue(served, "no request served by the healthy agent worker")
        # by a real worker (slot 1, or slot 0's replacement once ready), never the bait
        self.assertTrue(all(b.startswith(b"served by slot ") for b in served), served)
        self.wait_log(d, r"service web: worker \d+: ready: .*/run/web/w\d+\.sock is "
                         r"a symbolic link, not a socket: refusing it")
        self.stop_daemon(d)

    def test_agent_address_outside_its_directory_is_refused(self):
        d = self.start_daemon([self.service("agent", backend="agent",
                                            env=["EVIL_MODE=agent", "BAIT=" + self.bait.path,
                                                 "SOCKDIR=" + self.path("run", "web", "."),
                                                 "SWAPPED=/nonexistent"])])
        harness.wait_until(lambda: "is not a name in" in d.log(), 15,
                           what="the address refused in the log")
        self.assert_bait_untouched()
        self.stop_daemon(d)


@unittest.skipUnless(os.geteuid() == 0, "needs root: a throwaway user owns the directory")
class RuntimeDirTest(harness.DaemonTest):
    """Items 2 and 3: a runtime directory others can write, or a symlink in it, is refused."""

    def setUp(self):
        super().setUp()
        self.user = harness.throwaway_user(self)

    def assert_refused(self, d, *needles):
        try:
            rc = d.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.fail("socketnautd kept running")
        self.assertEqual(rc, 1)
        for needle in needles:
            self.assertIn(needle, d.log())

    def test_runtime_dir_created_by_another_user_is_refused(self):
        run = self.path("run")
        os.mkdir(run)
        os.chown(run, self.user.pw_uid, self.user.pw_gid)
        os.chmod(run, 0o777)
        d = self.start_daemon([harness.hello(worker_count=1)], wait=False)
        owner = "is owned by uid %d (%s) with mode 0777" % (self.user.pw_uid,
                                                           self.user.pw_name)
        self.assert_refused(d, "runtime_dir: %s %s" % (run, owner))
        self.assertEqual(os.listdir(run), [])
        rc, _, err = harness.run_check(d.config_path)
        self.assertEqual(rc, 1)
        self.assertIn("%s %s" % (run, owner), err)

    def test_world_writable_runtime_dir_is_refused_even_if_sticky_or_ours(self):
        run = self.path("run")
        os.mkdir(run)
        os.chmod(run, 0o1777)
        d = self.start_daemon([harness.hello(worker_count=1)], wait=False)
        self.assert_refused(d, "runtime_dir: %s is owned by uid 0 (root) with mode 1777" % run)

    def test_reload_refuses_a_runtime_dir_made_writable_and_keeps_serving(self):
        d = self.start_daemon([harness.hello(worker_count=1)], min_ready=1)
        harness.http_ok(self, d.port)
        os.chmod(d.runtime_dir, 0o777)
        d.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: d.status()["reloads"]["failed"] == 1, 10,
                           what="the reload refused")
        self.assertIn("runtime_dir: %s is owned by uid 0 (root) with mode 0777"
                      % d.runtime_dir, d.log())
        self.assertEqual(d.service()["generation"], 0)
        harness.http_ok(self, d.port)
        os.chmod(d.runtime_dir, 0o755)
        self.stop_daemon(d)

    def test_reload_to_another_user_hands_the_held_directory_over(self):
        other = harness.throwaway_user(self, prefix="sno")
        hello = harness.public_copy(self, harness.HELLO)
        d = self.start_daemon([harness.hello(worker_count=1, user=self.user.pw_name,
                                             command=hello + " --socket {socket}")],
                              min_ready=1)
        harness.http_ok(self, d.port)
        svcdir = os.path.join(d.runtime_dir, "web")
        self.assertEqual(os.stat(svcdir).st_uid, self.user.pw_uid)
        cfg = open(d.config_path).read().replace('"%s"' % self.user.pw_name,
                                                 '"%s"' % other.pw_name)
        with open(d.config_path, "w") as f:
            f.write(cfg)
        d.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: d.ready_pids(generation=1), 15,
                           what="the new generation ready")
        st = os.stat(svcdir)
        self.assertEqual((st.st_uid, stat.S_IMODE(st.st_mode)), (other.pw_uid, 0o700))
        harness.http_ok(self, d.port)
        self.stop_daemon(d)

    def test_default_runtime_dir_of_a_user_taken_by_another_is_refused(self):
        """The non-root default /tmp/socketnautd-UID, made (0777) by another user first."""
        runner = harness.throwaway_user(self, prefix="snr")
        run = "/tmp/socketnautd-%d" % runner.pw_uid
        shutil.rmtree(run, ignore_errors=True)
        os.mkdir(run)
        self.addCleanup(shutil.rmtree, run, True)
        os.chown(run, self.user.pw_uid, self.user.pw_gid)
        os.chmod(run, 0o777)
        daemon = harness.public_copy(self, harness.DAEMON)
        hello = harness.public_copy(self, harness.HELLO)
        conf = self.write_file("t.conf", 'service "web" {\n  listen = { "127.0.0.1:%d" }\n'
                               '  command = "%s --socket {socket}"\n}\n'
                               % (harness.free_port(), hello))
        env = harness.daemon_env()
        env.pop("XDG_RUNTIME_DIR", None)

        def as_runner():
            os.setgroups([])
            os.setgid(runner.pw_gid)
            os.setuid(runner.pw_uid)

        for args in (["-t"], ["-d"]):
            p = subprocess.run([daemon] + args + ["-c", conf], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=20, env=env, cwd=self.tmp,
                               preexec_fn=as_runner)
            err = p.stderr.decode(errors="replace")
            self.assertEqual(p.returncode, 1, err)
            self.assertIn("%s is owned by uid %d (%s) with mode 0777"
                          % (run, self.user.pw_uid, self.user.pw_name), err)
        self.assertEqual(os.listdir(run), [])

    def test_service_dir_symlink_is_refused_and_its_target_untouched(self):
        run, other = self.path("run"), self.path("other")
        os.mkdir(run, 0o755)
        os.mkdir(other, 0o750)
        os.chmod(other, 0o750)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(listener.close)
        listener.bind(os.path.join(other, "x.sock"))
        self.write_file("other/notes.sock", "keep me\n")
        os.symlink(other, os.path.join(run, "web"))
        before = {n: os.lstat(os.path.join(other, n)) for n in os.listdir(other)}
        st = os.stat(other)
        d = self.start_daemon([harness.hello(worker_count=1, user=self.user.pw_name)],
                              wait=False)
        self.assert_refused(d, "service web: %s/web is a symbolic link or not a directory: "
                               "refusing it" % run)
        after = os.stat(other)
        self.assertEqual((after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)),
                         (st.st_uid, st.st_gid, 0o750))
        self.assertEqual(sorted(os.listdir(other)), sorted(before))
        for name, was in before.items():
            now = os.lstat(os.path.join(other, name))
            self.assertEqual((now.st_ino, now.st_uid, now.st_mode),
                             (was.st_ino, was.st_uid, was.st_mode), name)
        self.assertTrue(os.path.islink(os.path.join(run, "web")))


if __name__ == "__main__":
    unittest.main()


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare"),
                     "needs root and unshare(1): the daemon runs where /proc is not mounted")
class NoProcTest(harness.DaemonTest):
    """Without /proc the pin cannot be connected through: workers of another user are refused
    a Unix socket; workers of the daemon's own user still work (they could reach nothing
    more than the daemon itself)."""

    def start_without_proc(self, services):
        d = harness.Daemon(self.tmp, services)
        self.daemons.append(d)
        args = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'umount -l /proc && exec "$@"', "sh", harness.DAEMON, "-d", "-c", d.config_path]
        with open(d.log_path, "ab") as log:
            d.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      env=harness.daemon_env(), cwd=self.tmp,
                                      start_new_session=True)
        d.pid = d.proc.pid
        harness._live_groups.add(d.pid)
        return d

    def test_worker_of_another_user_is_refused_a_unix_socket(self):
        user = harness.throwaway_user(self)
        hello = harness.public_copy(self, harness.HELLO)
        d = self.start_without_proc([harness.hello(worker_count=1, user=user.pw_name,
                                                   command=hello + " --socket {socket}")])
        try:
            rc = d.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.fail("socketnautd kept running without /proc")
        self.assertEqual(rc, 1)
        self.assertRegex(d.log(), r"service web: .*/run/web: /proc is not mounted, and "
                                  r"socketnautd reaches the sockets of workers of another "
                                  r"user only through /proc/self/fd")

    def test_worker_of_the_daemons_user_still_serves(self):
        d = self.start_without_proc([harness.hello(worker_count=1)])
        d.wait_listening()
        harness.http_ok(self, d.port)
        rc = d.stop()
        # LeakSanitizer cannot run without /proc (nor read ASAN_OPTIONS): a sanitized build
        # then ends with status 1 after a clean stop.
        if "LeakSanitizer has encountered a fatal error" not in d.log():
            self.assertEqual(rc, 0, "socketnautd exit status after SIGTERM")
        self.assertIn("notice: stopped", d.log())
