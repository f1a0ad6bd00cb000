"""SIGUSR2: binary upgrade.  The master re-executes its binary with the listening sockets; the
new master starts its workers and, once ready, takes over; the old one drains and exits.  A
failed upgrade leaves the old master serving with its workers untouched."""

import json
import os
import unittest
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time

import harness


def ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


class UpgradeTest(harness.DaemonTest):

    def start_from(self, binary, services, global_opts=None):
        """Like start_daemon, but running `binary` (a copy the test may replace)."""
        d = harness.Daemon(self.tmp, services, global_opts)
        self.daemons.append(d)
        args = [binary, "-c", d.config_path] + (["-d"] if harness.DEBUG else [])
        with open(d.log_path, "ab") as log:
            d.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      env=harness.daemon_env(), cwd=self.tmp,
                                      start_new_session=True)
        d.pid = d.proc.pid
        harness._live_groups.add(d.pid)
        d.wait_listening()
        return d

    def wait_log(self, d, pattern, timeout=15, count=1):
        rx = re.compile(pattern, re.M)
        harness.wait_until(lambda: len(rx.findall(d.log())) >= count, timeout,
                           what="%d log line(s) /%s/" % (count, pattern))

    def new_masters(self, d):
        """Processes other than the old master that run its command line: the new
        master(s) (the keeper, forked without exec, has it too).  Not only its children:
        an old master that drains at once is gone, and its child reparented, before we look."""
        conf = d.config_path.encode()
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == d.pid:
                continue
            p = int(name)
            try:
                if conf in cmdline(p) and harness.proc_comm(p) != "sn-keeper":
                    found.append(p)
            except OSError:
                pass
        # a worker forked by a new master has its command line until it execs
        return [p for p in found if ppid(p) not in found]

    def wait_new_master(self, d, timeout=15):
        pids = harness.wait_until(lambda: self.new_masters(d), timeout, what="a new master")
        self.assertEqual(len(pids), 1, "more than one new master: %s" % pids)
        pid = pids[0]
        self.addCleanup(self.kill_master, pid)
        return pid

    def kill_master(self, pid):
        """Cleanup: a new master is no child of ours; SIGKILL its workers' parent."""
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    def stop_master(self, pid, workers, runtime_dir):
        """SIGTERM a master that is no child of ours; wait (bounded) until it and its workers
        are gone and left no socket behind."""
        os.kill(pid, signal.SIGTERM)
        harness.wait_until(lambda: not harness.proc_alive(pid), 15,
                           what="master %d to exit after SIGTERM" % pid)
        harness.wait_until(lambda: not any(harness.proc_alive(p) for p in workers), 5,
                           what="workers %s to be gone" % workers)
        self.assertEqual(self.sockets(runtime_dir), [], "sockets left behind")

    def workers_of(self, pid):
        return [p for p in harness.children(pid) if harness.proc_comm(p) != "sn-keeper"]

    def sockets(self, runtime_dir):
        found = []
        for root, _, files in os.walk(runtime_dir):
            # workers' sockets; the admin socket is the running master's
            found += [f for f in files if f != "admin.sock" and
                      stat.S_ISSOCK(os.lstat(os.path.join(root, f)).st_mode)]
        return sorted(found)

    def served_by(self, port, n=4):
        pids = set()
        for _ in range(n):
            r = harness.http_ok(self, port)
            pids.add(harness.hello_identity(r.body)[1])
        return pids

    def test_usr2_under_load_new_master_serves_old_exits_no_request_fails(self):
        d = self.start_daemon([harness.hello(worker_count=2)],
                              global_opts={"shutdown_timeout": "10s"})
        old_workers = d.wait_ready(2)
        stop = threading.Event()
        ok, failed, seen = [0], [], set()
        lock = threading.Lock()

        def load():
            deadline = time.monotonic() + 60
            for _ in range(100000):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    r = harness.http(d.port, timeout=10)
                    pid = harness.hello_identity(r.body)[1] if r.status == 200 else None
                    with lock:
                        if r.status == 200:
                            ok[0] += 1
                            seen.add(pid)
                        else:
                            failed.append(r.status)
                except Exception as e:  # refused, reset, timeout: all failures
                    with lock:
                        failed.append(repr(e))

        threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        harness.wait_until(lambda: ok[0] >= 50, 20, what="50 requests before the upgrade")
        time.sleep(1.5)  # a few seconds of load in all
        d.proc.send_signal(signal.SIGUSR2)
        new = self.wait_new_master(d)
        try:
            rc = d.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.fail("the old master did not exit within 30 s of the upgrade")
        self.assertEqual(rc, 0, "old master's exit status")
        before = ok[0]
        harness.wait_until(lambda: ok[0] >= before + 50, 20, what="50 requests after it")
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(15)
        self.assertEqual(failed, [], "requests failed during the upgrade")

        self.assertTrue(harness.proc_alive(new), "the new master is gone")
        new_workers = self.workers_of(new)
        self.assertEqual(len(new_workers), 2, new_workers)
        self.assertTrue(self.served_by(d.port) <= set(new_workers),
                        "served by a worker that is not the new master's")
        self.assertTrue(seen & set(old_workers) and seen & set(new_workers),
                        "the load did not reach both masters' workers")
        harness.wait_until(lambda: not any(harness.proc_alive(p) for p in old_workers), 5,
                           what="old workers %s to be gone" % old_workers)
        names = self.sockets(d.runtime_dir)
        self.assertEqual(len(names), 2, names)
        self.assertTrue(all(n.startswith("%d-" % new) for n in names),
                        "sockets of the old master left: %s" % names)
        log = d.log()
        self.assertIn("binary upgrade: new master %d is serving" % new, log)
        self.assertIn("(passed to us)", log)
        self.assertNotIn("cannot listen", log)
        # With worker cgroups, the new master sits beside the old one, not below it.
        self.assertNotRegex(log, r"workers in \S*/master/workers-")
        self.stop_master(new, new_workers, d.runtime_dir)

    @unittest.skipIf(shutil.which("wrk") is None, "needs wrk (tools/install-deps installs it)")
    def test_usr2_under_wrk_load_fails_no_request(self):
        from test_fleet import parse_wrk
        d = self.start_daemon([harness.hello(worker_count=2)])
        d.wait_ready(2)
        for keepalive in (False, True):
            head = [] if keepalive else ["-H", "Connection: close"]
            w = subprocess.Popen(["wrk", "-t1", "-c8", "-d4s"] + head +
                                 ["http://127.0.0.1:%d/" % d.port],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(1.0)
            master = d.pid if not keepalive else new
            os.kill(master, signal.SIGUSR2)
            harness.wait_until(lambda: [p for p in self.new_masters(d) if p != master], 20,
                               what="a new master")
            new = [p for p in self.new_masters(d) if p != master][0]
            self.addCleanup(self.kill_master, new)
            out, _ = w.communicate(timeout=60)
            n, failed = parse_wrk(out)
            self.assertGreater(n, 100, out)
            self.assertEqual(failed, 0, "requests failed during the upgrade:\n" + out)
            harness.wait_until(lambda: not harness.proc_alive(master), 20,
                               what="the old master to exit")
        self.stop_master(new, self.workers_of(new), d.runtime_dir)

    def test_long_lived_connection_to_old_worker_finishes_after_upgrade(self):
        d = self.start_daemon([harness.hello(worker_count=1)],
                              global_opts={"shutdown_timeout": "20s"})
        (old_worker,) = d.wait_ready(1)
        result = []

        def slow():
            try:
                result.append(harness.http(d.port, path="/sleep?ms=3000", timeout=20))
            except Exception as e:
                result.append(e)

        t = threading.Thread(target=slow, daemon=True)
        t.start()
        time.sleep(0.5)  # the request is in the old worker, sleeping
        d.proc.send_signal(signal.SIGUSR2)
        new = self.wait_new_master(d)
        self.wait_log(d, r"binary upgrade: new master %d is serving" % new)
        self.assertTrue(d.alive(), "the old master left its client behind")
        self.assertTrue(harness.proc_alive(old_worker))
        served = self.served_by(d.port, 2)
        self.assertNotIn(old_worker, served, "a new client went to the draining master")
        t.join(20)
        self.assertEqual(len(result), 1)
        self.assertIsInstance(result[0], harness.Response, "the long request failed")
        self.assertEqual((result[0].status, result[0].body), (200, b"slept 3000\n"))
        self.assertEqual(d.proc.wait(15), 0)
        harness.wait_until(lambda: not harness.proc_alive(old_worker), 5,
                           what="old worker to be gone")
        self.stop_master(new, self.workers_of(new), d.runtime_dir)

    def test_failing_binary_missing_binary_leave_old_master_serving_then_upgrade_works(self):
        binary = os.path.join(self.tmp, "bin", "socketnautd")
        os.makedirs(os.path.dirname(binary))
        shutil.copy2(harness.DAEMON, binary)
        d = self.start_from(binary, [harness.hello(worker_count=2)])
        workers = d.wait_ready(2)
        keeper = [p for p in harness.children(d.pid) if harness.proc_comm(p) == "sn-keeper"]

        # A package "upgrade" to a binary that fails: replaced by rename, as dpkg does.
        script = binary + ".new"
        with open(script, "w") as f:
            f.write("#!/bin/sh\nexit 1\n")
        os.chmod(script, 0o755)
        os.rename(script, binary)
        d.proc.send_signal(signal.SIGUSR2)
        self.wait_log(d, r"binary upgrade failed: the new master \d+ exited with status 1 "
                         r"before it was ready.*; this master \(%d\) goes on serving" % d.pid)
        # Missing: the exec fails in the child, which says why.
        os.unlink(binary)
        d.proc.send_signal(signal.SIGUSR2)
        self.wait_log(d, r"binary upgrade failed: cannot execute %s: No such file or directory"
                      % re.escape(binary))
        harness.wait_until(lambda: self.new_masters(d) == [], 5, what="no child left")
        self.assertTrue(d.alive())
        self.assertEqual(d.workers(), workers, "the old master's workers changed")
        self.assertTrue(self.served_by(d.port) <= set(workers))
        self.assertEqual(sorted(harness.children(d.pid)), sorted(workers + keeper))

        # The real binary back: the next SIGUSR2 upgrades.
        shutil.copy2(harness.DAEMON, binary)
        d.proc.send_signal(signal.SIGUSR2)
        new = self.wait_new_master(d)
        self.assertEqual(d.proc.wait(20), 0)
        self.assertTrue(self.served_by(d.port) <= set(self.workers_of(new)))
        self.stop_master(new, self.workers_of(new), d.runtime_dir)

    def test_new_master_refusing_the_config_leaves_old_master_serving(self):
        d = self.start_daemon([harness.hello(worker_count=2)])
        workers = d.wait_ready(2)
        with open(d.config_path, "a") as f:
            f.write("no_such_option = 1\n")
        d.proc.send_signal(signal.SIGUSR2)
        self.wait_log(d, r"binary upgrade failed: the new master \d+ exited with status 1")
        self.assertRegex(d.log(), r"socketnaut\.conf:\d+: .*no_such_option")
        self.assertTrue(d.alive())
        self.assertEqual(d.workers(), workers)
        self.assertTrue(self.served_by(d.port) <= set(workers))
        self.stop_daemon(d)

    def test_new_master_not_ready_within_upgrade_timeout_is_stopped_and_cleaned_up(self):
        pid_file = self.path("socketnautd.pid")
        d = self.start_daemon([harness.hello(worker_count=1)],
                              global_opts={"upgrade_timeout": harness.Raw("2s"),
                                           "pid_file": pid_file})
        (worker,) = d.wait_ready(1)
        # The new master's worker makes its socket, then waits before it accepts anything
        # ready would need: its control channel never says ready.
        hold = self.write_file("hold.py", (
            "import os, socket, sys, time\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "s.bind(sys.argv[1])\n"
            "time.sleep(30)\n"), 0o755)
        text = open(d.config_path).read().replace(
            '"socketnaut-hello --socket {socket}"',
            '"%s %s {socket}"' % (harness.PYTHON, hold))
        with open(d.config_path, "w") as f:
            f.write(text)
        d.proc.send_signal(signal.SIGUSR2)
        new = self.wait_new_master(d)
        harness.wait_until(lambda: len(self.sockets(d.runtime_dir)) == 2, 10,
                           what="the new master's worker socket")
        new_workers = self.workers_of(new)
        self.wait_log(d, r"binary upgrade failed: the new master %d was not ready after "
                         r"2000ms; this master \(%d\) goes on serving" % (new, d.pid))
        harness.wait_until(lambda: not harness.proc_alive(new), 10, what="new master gone")
        harness.wait_until(lambda: not any(harness.proc_alive(p) for p in new_workers), 5,
                           what="new master's workers gone")
        self.wait_log(d, r"binary upgrade: the new master %d (exited|was killed)" % new)
        self.assertEqual([n for n in self.sockets(d.runtime_dir)
                          if not n.startswith("%d-" % d.pid)], [],
                         "the failed master's sockets are left")
        self.assertEqual(d.workers(), [worker])
        self.assertEqual(self.served_by(d.port, 2), {worker})
        # The new master never took over: the pid file is still the old one's.
        with open(pid_file) as f:
            self.assertEqual(int(f.read()), d.pid, "the failed new master removed the pid file")
        self.stop_daemon(d)

    def test_new_master_ignoring_sigterm_is_killed_and_the_sockets_it_left_removed(self):
        binary = os.path.join(self.tmp, "bin", "socketnautd")
        os.makedirs(os.path.dirname(binary))
        shutil.copy2(harness.DAEMON, binary)
        d = self.start_from(binary, [harness.hello(worker_count=1)],
                            {"upgrade_timeout": harness.Raw("1s"),
                             "kill_timeout": harness.Raw("1s")})
        (worker,) = d.wait_ready(1)
        mine = self.sockets(d.runtime_dir)
        # A "new master" that leaves a worker socket named as its own would be, and ignores
        # SIGTERM.
        script = binary + ".new"
        with open(script, "w") as f:
            f.write("#!%s\n"
                    "import os, signal, socket, time\n"
                    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                    "s = socket.socket(socket.AF_UNIX)\n"
                    "s.bind(os.path.join(%r, 'web', '%%d-0.sock' %% os.getpid()))\n"
                    "time.sleep(60)\n" % (harness.PYTHON, d.runtime_dir))
        os.chmod(script, 0o755)
        os.rename(script, binary)
        d.proc.send_signal(signal.SIGUSR2)
        new = self.wait_new_master(d)
        harness.wait_until(lambda: "%d-0.sock" % new in self.sockets(d.runtime_dir), 10,
                           what="the new master's socket")
        self.wait_log(d, r"binary upgrade failed: the new master %d was not ready after "
                         r"1000ms" % new)
        self.wait_log(d, r"binary upgrade: new master %d still running 1000ms after SIGTERM, "
                         r"sending SIGKILL" % new)
        self.wait_log(d, r"binary upgrade: the new master %d was killed by signal 9" % new)
        self.assertEqual(self.sockets(d.runtime_dir), mine)
        self.assertEqual(d.workers(), [worker])
        self.assertEqual(self.served_by(d.port, 2), {worker})
        self.stop_daemon(d)

    def test_new_master_failing_its_start_leaves_the_old_ones_empty_directory(self):
        d = self.start_daemon([harness.hello(min_workers=0, max_workers=1)])
        web = os.path.join(d.runtime_dir, "web")
        self.assertEqual(os.listdir(web), [])  # no worker yet: an empty directory
        # The new master's second service cannot listen: it stops what it started, exits 1.
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with open(d.config_path, "a") as f:
            f.write('service "late" {\n    listen = { "127.0.0.1:%d" }\n'
                    '    command = "socketnaut-hello --socket {socket}"\n}\n'
                    % busy.getsockname()[1])
        d.proc.send_signal(signal.SIGUSR2)
        self.wait_log(d, r"binary upgrade failed: the new master \d+ exited with status 1")
        self.assertTrue(os.path.isdir(web), "the new master removed the old one's directory")
        r = harness.http_ok(self, d.port)  # a worker starts in it on demand
        (worker,) = d.workers()
        self.assertEqual(harness.hello_identity(r.body)[1], worker)
        self.stop_daemon(d)

    def test_second_usr2_during_upgrade_is_ignored(self):
        d = self.start_daemon([harness.hello(worker_count=1)])
        (worker,) = d.wait_ready(1)
        text = open(d.config_path).read().replace(
            '"socketnaut-hello --socket {socket}"',
            "{ \"sh\", \"-c\", \"sleep 3; exec socketnaut-hello --socket \\\"$0\\\"\", "
            "\"{socket}\" }")
        with open(d.config_path, "w") as f:
            f.write(text)
        d.proc.send_signal(signal.SIGUSR2)
        new = self.wait_new_master(d)
        d.proc.send_signal(signal.SIGUSR2)
        self.wait_log(d, r"SIGUSR2: a binary upgrade is under way \(new master %d\): ignored"
                      % new)
        self.assertEqual(self.new_masters(d), [new])
        self.assertEqual(d.proc.wait(20), 0)
        self.assertEqual(d.log().count("binary upgrade: starting "), 1)
        self.assertTrue(self.served_by(d.port, 2) <= set(self.workers_of(new)))
        self.stop_master(new, self.workers_of(new), d.runtime_dir)

    def test_upgraded_master_upgrades_again(self):
        d = self.start_daemon([harness.hello(worker_count=1)])
        d.wait_ready(1)
        d.proc.send_signal(signal.SIGUSR2)
        first = self.wait_new_master(d)
        self.assertEqual(d.proc.wait(20), 0)
        harness.wait_until(lambda: len(self.workers_of(first)) == 1, 10,
                           what="the first new master's worker")
        os.kill(first, signal.SIGUSR2)
        second = harness.wait_until(
            lambda: [p for p in self.new_masters(d) if p != first], 15,
            what="a second new master")[0]
        self.addCleanup(self.kill_master, second)
        harness.wait_until(lambda: not harness.proc_alive(first), 20,
                           what="the first new master to hand over and exit")
        self.wait_log(d, r"binary upgrade: new master %d is serving" % second)
        second_workers = self.workers_of(second)
        self.assertEqual(len(second_workers), 1)
        self.assertEqual(self.served_by(d.port, 2), set(second_workers))
        self.assertNotRegex(d.log(), r"workers in \S*/master/workers-")
        self.stop_master(second, second_workers, d.runtime_dir)

    def test_pid_file_names_the_new_master_and_stays_locked_across_the_upgrade(self):
        pid_file = self.path("socketnautd.pid")
        d = self.start_daemon([harness.hello(worker_count=1)], {"pid_file": pid_file})
        d.wait_ready(1)
        harness.wait_until(lambda: os.path.exists(pid_file), 10, what="the pid file")
        with open(pid_file) as f:
            self.assertEqual(int(f.read()), d.pid)
        d.proc.send_signal(signal.SIGUSR2)
        new = self.wait_new_master(d)
        self.addCleanup(self.kill_master, new)
        self.assertEqual(d.proc.wait(20), 0)
        # the old master left the file to the new one, which wrote its pid into it
        with open(pid_file) as f:
            self.assertEqual(int(f.read()), new)
        # and holds the old master's lock: a second daemon on the file is refused
        other = harness.Daemon(self.tmp, [harness.hello(name="other")],
                               {"pid_file": pid_file,
                                "runtime_dir": self.path("run-other")}, name="other")
        self.daemons.append(other)
        other.start()
        self.assertEqual(other.proc.wait(20), 1)
        self.assertIn("held by a running socketnautd (pid %d)" % new, other.log())
        workers = self.workers_of(new)
        self.stop_master(new, workers, d.runtime_dir)
        self.assertFalse(os.path.exists(pid_file), "the new master left its pid file")

    def test_admin_socket_and_stats_listener_follow_the_new_master(self):
        stats = harness.free_port()
        d = self.start_daemon([harness.hello(worker_count=1)],
                              {"stats_listen": "127.0.0.1:%d" % stats})
        d.wait_ready(1)
        self.assertEqual(d.status()["pid"], d.pid)
        d.proc.send_signal(signal.SIGUSR2)
        new = self.wait_new_master(d)
        self.addCleanup(self.kill_master, new)
        self.assertEqual(d.proc.wait(20), 0)
        # the admin socket the operator knows answers for the new master
        self.assertEqual(d.status()["pid"], new)
        self.assertTrue(os.path.exists(d.admin_socket))
        r = harness.http(stats, path="/status.json")
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.body)["pid"], new)
        self.assertEqual(harness.http(stats, path="/health").status, 200)
        self.stop_master(new, self.workers_of(new), d.runtime_dir)
        self.assertFalse(os.path.exists(d.admin_socket), "the new master left its admin socket")

    def test_sockets_passed_as_systemd_does_are_used_and_unknown_ones_closed(self):
        port, other = harness.free_port(), harness.free_port()
        d = harness.Daemon(self.tmp, [harness.hello(worker_count=1,
                                                    listen=["127.0.0.1:%d" % port])])
        self.daemons.append(d)
        socks = []
        for p in (port, other):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))
            s.listen(16)
            socks.append(s)
        # A client that connects before the daemon exists waits in the passed socket's
        # backlog: the same kernel socket serves it.
        early = harness.Conn(port, timeout=20)
        early.send(harness.build_request("GET", "/"))
        fds = [s.fileno() for s in socks]

        def place():
            tmp = [os.dup(fd) for fd in fds]
            for i, fd in enumerate(tmp):
                os.dup2(fd, 3 + i)

        args = ["/bin/sh", "-c", 'LISTEN_PID=$$ exec "$0" "$@"', harness.DAEMON,
                "-c", d.config_path]
        env = harness.daemon_env({"LISTEN_FDS": "2", "LISTEN_FDNAMES": "web:spare"})
        with open(d.log_path, "ab") as log:
            d.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      env=env, cwd=self.tmp, start_new_session=True,
                                      preexec_fn=place, pass_fds=(3, 4))
        d.pid = d.proc.pid
        harness._live_groups.add(d.pid)
        for s in socks:
            s.close()
        r = early.read_response()
        early.close()
        self.assertEqual(r.status, 200)
        (worker,) = d.wait_ready(1)
        self.assertEqual(self.served_by(port, 2), {worker})
        log = d.log()
        self.assertIn("service web: listening on 127.0.0.1:%d (passed to us)" % port, log)
        self.assertIn("passed socket 127.0.0.1:%d is no listen address of ours: closed"
                      % other, log)
        self.assertFalse(harness.port_open(other), "the unknown passed socket still listens")
        self.stop_daemon(d)

    def test_upgrade_timeout_below_one_second_is_a_config_error(self):
        path = self.write_file("bad.conf", harness.render_config(
            {"runtime_dir": self.path("run"), "upgrade_timeout": harness.Raw("500ms")},
            [harness.hello(listen=["127.0.0.1:%d" % harness.free_port()])]))
        rc, _, err = harness.run_check(path)
        self.assertEqual(rc, 1)
        self.assertRegex(err, r"bad\.conf:2: upgrade_timeout must be at least 1s")
