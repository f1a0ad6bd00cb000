"""A worker whose exec hangs does not freeze the master.

The command lives on a FUSE file system (bindfs) whose daemon we stop: an exec from it waits
for an answer that does not come, as on a dead NFS server or a FUSE mount that the worker's own
user made on its command's path.  The master must go on serving its other services and answering
its admin socket, and the worker must start once the file system answers again."""

import os
import shutil
import signal
import subprocess
import time

import harness
from harness import wait_until


def sockets_of(pid):
    """The socket inodes pid holds."""
    found = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except FileNotFoundError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


def fuse_missing():
    """Why a FUSE mount cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if shutil.which("bindfs") is None:
        return "no bindfs (tools/install-deps installs it)"
    return None


class HungExecTest(harness.DaemonTest):

    def setUp(self):
        super().setUp()
        why = fuse_missing()
        if why:
            self.skipTest(why)
        src, self.mnt = self.path("bin"), self.path("mnt")
        os.mkdir(src)
        os.mkdir(self.mnt)
        shutil.copy(harness.HELLO, src)
        self.fs = subprocess.Popen(["bindfs", "-f", src, self.mnt],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(self.unmount)
        self.hello = os.path.join(self.mnt, os.path.basename(harness.HELLO))
        wait_until(lambda: os.path.exists(self.hello), 10, what="the bindfs mount")

    def unmount(self):
        if self.fs.poll() is None:
            self.fs.send_signal(signal.SIGCONT)
        subprocess.run(["umount", "-l", self.mnt], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10)
        if self.fs.poll() is None:
            self.fs.terminate()
        try:
            self.fs.wait(10)
        except subprocess.TimeoutExpired:
            self.fs.kill()
            self.fs.wait(10)

    def worker_of(self, d, name):
        """The service's one worker as the admin socket shows it ({} while it has none)."""
        for svc in d.status(timeout=5)["services"]:
            if svc["name"] == name and svc["workers"]:
                return svc["workers"][0]
        return {}

    def hang_a_replacement(self, d):
        """Stop the file system and kill the ready worker of "stuck": its replacement's exec
        hangs.  Returns (the killed pid, the replacement's)."""
        old = d.ready_pids("stuck")[0]
        self.fs.send_signal(signal.SIGSTOP)
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: self.worker_of(d, "stuck").get("pid") not in (None, old), 10,
                   what="a replacement worker")
        return old, self.worker_of(d, "stuck")["pid"]

    def test_a_hung_exec_leaves_the_master_serving_and_the_worker_starts_once_it_returns(self):
        d = self.start_daemon([
            {"name": "stuck", "command": self.hello + " --socket {socket}", "worker_count": 1,
             "ready_timeout": "60s"},
            harness.hello(name="other", worker_count=1)])
        d.wait_ready(2)
        old, new = self.hang_a_replacement(d)
        self.assertEqual(self.worker_of(d, "stuck")["state"], "starting")
        # Not yet exec'd: the process is still the master's image.
        self.assertEqual(os.path.realpath("/proc/%d/exe" % new), os.path.realpath(harness.DAEMON))
        # It holds none of the master's sockets (a listener would queue clients, a client
        # socket would never get its FIN): only what it was given.
        shared = sockets_of(new) & sockets_of(d.pid)
        self.assertEqual(shared, set(), "the hung child holds the master's sockets")
        # The master goes on: the other service serves, the admin socket answers.
        t0 = time.monotonic()
        for _ in range(5):
            harness.http_ok(self, d.ports["other"], timeout=5)
        self.assertLess(time.monotonic() - t0, 5, "the other service was slow to answer")
        w = self.worker_of(d, "stuck")
        self.assertEqual((w["pid"], w["state"]), (new, "starting"))
        # The admin socket says why: its exec is late.
        late = wait_until(lambda: self.worker_of(d, "stuck")["exec_late_s"], 10,
                          what="exec_late_s set")
        self.assertGreaterEqual(late, 1.0)
        # The file system answers: the exec completes and the worker serves.
        self.fs.send_signal(signal.SIGCONT)
        wait_until(lambda: d.ready_pids("stuck") == [new], 15, what="the worker ready")
        self.assertIsNone(self.worker_of(d, "stuck")["exec_late_s"])
        harness.http_ok(self, d.ports["stuck"], timeout=5)
        self.stop_daemon(d)

    def test_a_hung_exec_is_killed_at_ready_timeout_and_holds_back_only_its_own_service(self):
        d = self.start_daemon([
            {"name": "stuck", "command": self.hello + " --socket {socket}", "worker_count": 1,
             "ready_timeout": "2s"},
            harness.hello(name="other", worker_count=1)])
        d.wait_ready(2)
        old, hung = self.hang_a_replacement(d)
        # Another service's worker dies while that exec hangs: its replacement starts at once.
        other = d.ready_pids("other")[0]
        os.kill(other, signal.SIGKILL)
        wait_until(lambda: d.ready_pids("other") not in ([], [other]), 5,
                   what="the other service's worker replaced")
        self.assertTrue(os.path.exists("/proc/%d" % hung), "the hung exec ended early")
        harness.http_ok(self, d.ports["other"], timeout=5)
        # ready_timeout gives the hung worker up: it is killed, and its service tries again
        # (each try hangs as long as the file system does not answer).
        wait_until(lambda: self.worker_of(d, "stuck").get("pid") not in (None, old, hung), 20,
                   what="the hung worker killed and replaced")
        self.fs.send_signal(signal.SIGCONT)
        wait_until(lambda: len(d.ready_pids("stuck")) == 1, 20, what="the worker ready")
        harness.http_ok(self, d.ports["stuck"], timeout=5)
        self.stop_daemon(d)

    def test_with_socket_activation_a_worker_is_ready_only_once_it_has_exec_d(self):
        # Its socket is bound and listening before the exec: a child whose exec hangs must
        # not be taken as ready, or it would hold every client given to it.
        d = self.start_daemon([{"name": "stuck", "command": self.hello, "worker_count": 1,
                                "socket_activation": True, "ready_timeout": "60s"}])
        d.wait_ready(1)
        _, new = self.hang_a_replacement(d)
        # Still not ready once its exec is known to be late.
        wait_until(lambda: self.worker_of(d, "stuck")["exec_late_s"], 10, what="exec_late_s set")
        w = self.worker_of(d, "stuck")
        self.assertEqual((w["pid"], w["state"]), (new, "starting"))
        self.fs.send_signal(signal.SIGCONT)
        wait_until(lambda: d.ready_pids("stuck") == [new], 15, what="the worker ready")
        harness.http_ok(self, d.port, timeout=5)
        self.stop_daemon(d)

    def test_a_reload_does_not_wait_on_a_command_whose_file_system_hangs(self):
        # A reload checks each command and directory; one that does not answer fails the
        # reload in a bounded time, and the master serves on with the running workers.
        d = self.start_daemon([
            {"name": "stuck", "command": self.hello + " --socket {socket}", "worker_count": 1},
            harness.hello(name="other", worker_count=1)])
        d.wait_ready(2)
        self.fs.send_signal(signal.SIGSTOP)
        p = d.ctl("reload", timeout=20)
        self.assertEqual(p.returncode, 2, (p.stdout, p.stderr))
        self.assertIn("its file system did not answer", p.stderr)
        self.assertEqual(d.status(timeout=5)["reloads"]["last_result"], "failed")
        harness.http_ok(self, d.ports["other"], timeout=5)
        harness.http_ok(self, d.ports["stuck"], timeout=5)
        self.fs.send_signal(signal.SIGCONT)
        p = d.ctl("reload", timeout=20)
        self.assertEqual(p.returncode, 0, (p.stdout, p.stderr))
        self.stop_daemon(d)

    def test_reloads_during_a_hang_wait_on_the_same_check_instead_of_a_thread_each(self):
        # A check that does not answer leaves its thread stuck in the kernel.  The next
        # reload checking the same command waits on that check: no new thread per reload.
        d = self.start_daemon([
            {"name": "stuck", "command": self.hello + " --socket {socket}", "worker_count": 1},
            harness.hello(name="other", worker_count=1)])
        d.wait_ready(2)
        self.fs.send_signal(signal.SIGSTOP)
        counts = []
        for _ in range(3):
            p = d.ctl("reload", timeout=20)
            self.assertEqual(p.returncode, 2, (p.stdout, p.stderr))
            self.assertIn("its file system did not answer", p.stderr)
            counts.append(threads_of(d.pid))
        self.assertEqual(counts[1:], counts[:1] * 2, "a reload left one more thread stuck")
        harness.http_ok(self, d.ports["other"], timeout=5)
        self.fs.send_signal(signal.SIGCONT)
        wait_until(lambda: threads_of(d.pid) == counts[0] - 1, 10,
                   what="the stuck check's thread gone")
        p = d.ctl("reload", timeout=20)
        self.assertEqual(p.returncode, 0, (p.stdout, p.stderr))
        self.stop_daemon(d)

    def test_a_reload_with_many_silent_commands_fails_in_bounded_time_and_threads(self):
        # 34 commands on the stopped file system: the first check waits its 2 s, the next
        # ones briefly (the reload has failed already), and once 32 checks are stuck the rest
        # are not asked.  The old master waited 2 s for each, 68 s in all.
        src = self.path("bin")
        names = []
        for i in range(34):
            name = "hello%d" % i
            os.link(os.path.join(src, os.path.basename(harness.HELLO)), os.path.join(src, name))
            names.append(name)
        d = self.start_daemon([
            {"name": "s%d" % i, "command": os.path.join(self.mnt, n) + " --socket {socket}",
             "worker_count": 1} for i, n in enumerate(names)])
        d.wait_ready(34)
        before = threads_of(d.pid)
        self.fs.send_signal(signal.SIGSTOP)
        for _ in range(2):
            p = d.ctl("reload", timeout=30)
            self.assertEqual(p.returncode, 2, (p.stdout, p.stderr))
            self.assertEqual(p.stderr.count("its file system did not answer"), 32, p.stderr)
            self.assertEqual(p.stderr.count("its file system was not asked"), 2, p.stderr)
            self.assertEqual(threads_of(d.pid), before + 32)
        self.assertEqual(d.status(timeout=5)["reloads"]["last_result"], "failed")
        self.fs.send_signal(signal.SIGCONT)
        wait_until(lambda: threads_of(d.pid) == before, 10, what="the stuck checks' threads gone")
        p = d.ctl("reload", timeout=30)
        self.assertEqual(p.returncode, 0, (p.stdout, p.stderr))
        d.wait_ready(34)
        self.stop_daemon(d)


def threads_of(pid):
    """How many threads pid has."""
    return len(os.listdir("/proc/%d/task" % pid))
