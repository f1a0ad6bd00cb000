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


class WrittenAndReadFilesTest(harness.DaemonTest):
    """The files the master writes as root (its log, the access log, the pid file) are never
    reached through a symlink or a directory another user can rename in, and the files it
    reads as root (the configuration and its includes) are never ones another user can
    write: either would let a worker's user write anywhere, or run a command, as root."""

    def setUp(self):
        super().setUp()
        self.user = harness.throwaway_user(self)
        os.chmod(self.tmp, 0o755)
        self.bait = self.write_file("etc-secret", "root's own\n", 0o600)

    def users_dir(self, name, mode=0o755):
        path = self.path(name)
        os.mkdir(path)
        os.chown(path, self.user.pw_uid, self.user.pw_gid)
        os.chmod(path, mode)
        return path

    def as_user(self, *argv):
        u = self.user
        subprocess.run(list(argv), check=True, timeout=10, user=u.pw_uid, group=u.pw_gid,
                       extra_groups=[])

    def assert_bait_untouched(self):
        with open(self.bait) as f:
            self.assertEqual(f.read(), "root's own\n")
        self.assertEqual(stat.S_IMODE(os.stat(self.bait).st_mode), 0o600)

    def refused(self, d, needle):
        try:
            rc = d.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.fail("socketnautd kept running")
        self.assertEqual(rc, 1)
        self.assertIn(needle, d.log())

    def test_an_access_log_in_a_directory_a_worker_user_owns_is_refused(self):
        logs = self.users_dir("logs")
        self.as_user("ln", "-s", self.bait, os.path.join(logs, "access.log"))
        d = self.start_daemon([harness.hello(worker_count=1)],
                              {"access_log": os.path.join(logs, "access.log")}, wait=False)
        self.refused(d, "access_log: %s/access.log: %s is owned by uid %d (%s) with mode 0755: "
                        "others could rename" % (logs, logs, self.user.pw_uid,
                                                 self.user.pw_name))
        rc, _, err = harness.run_check(d.config_path)
        self.assertEqual(rc, 1)
        self.assertIn("others could rename", err)
        self.assert_bait_untouched()

    def test_a_daemon_log_in_a_directory_a_worker_user_owns_is_refused_by_check(self):
        logs = self.users_dir("logs")
        self.as_user("ln", "-s", self.bait, os.path.join(logs, "socketnautd.log"))
        conf = self.write_file("t.conf", 'log_target = "%s/socketnautd.log"\n'
                               'runtime_dir = "%s"\n' % (logs, self.path("run")))
        rc, _, err = harness.run_check(conf)
        self.assertEqual(rc, 1)
        self.assertIn("t.conf:1: log_target: %s/socketnautd.log: %s is owned by uid %d"
                      % (logs, logs, self.user.pw_uid), err)
        self.assert_bait_untouched()

    def test_in_a_sticky_shared_directory_a_symlink_or_another_users_file_is_refused(self):
        # /tmp-like: others cannot rename what is ours, but can put their own names there.
        shared = self.path("shared")
        os.mkdir(shared)
        os.chmod(shared, 0o1777)
        self.as_user("ln", "-s", self.bait, os.path.join(shared, "access.log"))
        self.as_user("touch", os.path.join(shared, "pid"))
        d = self.start_daemon([harness.hello(worker_count=1)],
                              {"access_log": os.path.join(shared, "access.log")}, wait=False)
        self.refused(d, "access_log: %s/access.log: a symbolic link: refusing it" % shared)
        d = self.start_daemon([harness.hello(worker_count=1)],
                              {"pid_file": os.path.join(shared, "pid")}, wait=False)
        self.refused(d, "pid_file: %s/pid: not a regular file of ours with one link" % shared)
        self.assert_bait_untouched()

    def test_an_access_log_swapped_for_a_symlink_is_not_followed_on_sigusr1(self):
        logs = self.path("logs")
        os.mkdir(logs)
        log = os.path.join(logs, "access.log")
        d = self.start_daemon([harness.hello(worker_count=1)], {"access_log": log},
                              min_ready=1)
        harness.http_ok(self, d.port)
        harness.wait_until(lambda: os.path.getsize(log) > 0, 10, what="an access log line")
        os.rename(log, log + ".1")
        os.symlink(self.bait, log)
        d.proc.send_signal(signal.SIGUSR1)
        harness.wait_until(lambda: "cannot reopen the access log: %s: a symbolic link" % log
                           in d.log(), 10, what="the reopen refused")
        size = os.path.getsize(log + ".1")
        harness.http_ok(self, d.port)
        harness.wait_until(lambda: os.path.getsize(log + ".1") > size, 10,
                           what="the line in the file it had")
        self.assert_bait_untouched()
        self.stop_daemon(d)

    def test_a_device_as_pid_file_is_refused_and_left_as_it_was(self):
        # A log may be /dev/null; a pid file is written, chmod'ed and removed at exit.
        dev = self.path("null")
        os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.chmod(dev, 0o666)
        d = self.start_daemon([harness.hello(worker_count=1)], {"pid_file": dev}, wait=False)
        self.refused(d, "pid_file: %s: not a regular file of ours with one link" % dev)
        st = os.stat(dev)
        self.assertTrue(stat.S_ISCHR(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o666)
        d = self.start_daemon([harness.hello(worker_count=1)], {"access_log": dev},
                              min_ready=1)
        harness.http_ok(self, d.port)
        self.stop_daemon(d)
        self.assertTrue(stat.S_ISCHR(os.stat(dev).st_mode))

    def test_a_log_below_a_directory_root_s_group_may_write_is_accepted(self):
        # Debian's /var/log is 0755; elsewhere root's group may write above the log, as
        # logrotate allows.  Another group may not.
        top = self.path("var-log")
        os.mkdir(top)
        os.chmod(top, 0o775)
        os.mkdir(os.path.join(top, "sn"))
        log = os.path.join(top, "sn", "access.log")
        d = self.start_daemon([harness.hello(worker_count=1)], {"access_log": log},
                              min_ready=1)
        harness.http_ok(self, d.port)
        self.stop_daemon(d)
        os.chown(top, 0, self.user.pw_gid)
        d = self.start_daemon([harness.hello(worker_count=1)], {"access_log": log}, wait=False)
        self.refused(d, "%s is owned by uid 0 (root) with mode 0775" % top)

    def test_a_configuration_reached_through_a_symlink_is_checked_where_it_lies(self):
        # conf.d/x.conf -> a file in a directory the user owns: they could swap it.
        theirs = self.users_dir("theirs")
        body = ('runtime_dir = "%s"\nservice "web" {\n listen = { "127.0.0.1:%d" }\n'
                ' command = "socketnaut-hello --socket {socket}"\n}\n'
                % (self.path("run"), harness.free_port()))
        target = os.path.join(theirs, "x.conf")
        with open(target, "w") as f:
            f.write(body)
        os.chmod(target, 0o644)  # root's file, in their directory
        link = self.path("x.conf")
        os.symlink(target, link)
        rc, _, err = harness.run_check(link)
        self.assertEqual(rc, 1)
        self.assertIn("%s is owned by uid %d" % (theirs, self.user.pw_uid), err)
        # the same file in a directory of root's, through a link of root's: fine
        ours = self.path("ours")
        os.mkdir(ours)
        os.rename(target, os.path.join(ours, "x.conf"))
        os.unlink(link)
        os.symlink("ours/x.conf", link)
        rc, out, err = harness.run_check(link)
        self.assertEqual(rc, 0, err)

    def test_a_configuration_another_user_can_write_is_refused(self):
        conf = self.write_file("t.conf", 'runtime_dir = "%s"\n'
                               'service "web" {\n listen = { "127.0.0.1:%d" }\n'
                               ' command = "socketnaut-hello --socket {socket}"\n}\n'
                               % (self.path("run"), harness.free_port()))
        os.chown(conf, self.user.pw_uid, self.user.pw_gid)
        rc, _, err = harness.run_check(conf)
        self.assertEqual(rc, 1)
        self.assertIn("%s: owned by uid %d (%s) with mode 0644: whoever can write it runs "
                      "commands" % (conf, self.user.pw_uid, self.user.pw_name), err)
        os.chown(conf, 0, self.user.pw_gid)
        os.chmod(conf, 0o664)
        rc, _, err = harness.run_check(conf)
        self.assertEqual(rc, 1)
        self.assertIn("owned by uid 0 (root) with mode 0664", err)
        os.chown(conf, 0, 0)  # root's group may write it, as sudo and logrotate allow
        rc, out, err = harness.run_check(conf)
        self.assertEqual(rc, 0, err)
        os.chmod(conf, 0o644)
        rc, out, err = harness.run_check(conf)
        self.assertEqual(rc, 0, err)

    def test_an_include_another_user_dropped_in_is_refused_and_never_run(self):
        # conf.d writable by the user (sticky, as /tmp): a service they add would run as root.
        confd = self.path("conf.d")
        os.mkdir(confd)
        os.chmod(confd, 0o1777)
        d = self.start_daemon([harness.hello(worker_count=1)], min_ready=1)
        with open(d.config_path, "a") as f:
            f.write('include "%s/*.conf"\n' % confd)
        evil = os.path.join(confd, "evil.conf")
        marker = self.path("ran-as-root")
        text = ('service "evil" {\n listen = { "127.0.0.1:%d" }\n'
                ' command = { "/bin/sh", "-c", "id -u > %s; exec sleep 60" }\n'
                ' worker_count = 1\n}\n' % (harness.free_port(), marker))
        subprocess.run(["sh", "-c", "cat > " + evil], input=text.encode(), check=True,
                       timeout=10, user=self.user.pw_uid, group=self.user.pw_gid,
                       extra_groups=[])
        p = d.ctl("reload", timeout=20)
        self.assertEqual(p.returncode, 2, (p.stdout, p.stderr))
        self.assertIn("%s: owned by uid %d" % (evil, self.user.pw_uid), p.stderr)
        self.assertEqual([s["name"] for s in d.status()["services"]], ["web"])
        self.assertFalse(os.path.exists(marker), "the dropped-in command ran")
        harness.http_ok(self, d.port)
        self.stop_daemon(d)
