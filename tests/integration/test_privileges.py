"""What a worker can regain: no_new_privs by default, no supplementary groups it was not given."""

import os
import unittest

import harness

# Groups the master is started with, which no worker should inherit.
MASTER_GROUPS = [54321, 54322]


def status_field(pid, name):
    """The value of `name:` in /proc/PID/status, split into words."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == name:
                return value.split()
    raise AssertionError("no %s in /proc/%d/status" % (name, pid))


def with_master_groups():
    os.setgroups(MASTER_GROUPS)


class PrivilegesTest(harness.DaemonTest):

    def worker(self, d):
        (pid,) = d.wait_workers(1)
        harness.wait_until(lambda: harness.proc_comm(pid) == "socketnaut-hell", 5,
                           what="worker %d to exec" % pid)
        return pid

    def test_workers_run_with_no_new_privs_by_default(self):
        d = self.start_daemon([harness.hello(worker_count=1)], min_ready=1)
        self.assertEqual(status_field(self.worker(d), "NoNewPrivs"), ["1"])
        self.assertEqual(status_field(d.pid, "NoNewPrivs"), ["0"],
                         "the master itself is not restricted")

    def test_no_new_privileges_false_lets_workers_run_setuid_helpers(self):
        d = self.start_daemon([harness.hello(worker_count=1, no_new_privileges=False)],
                              min_ready=1)
        self.assertEqual(status_field(self.worker(d), "NoNewPrivs"), ["0"])

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_root_worker_without_user_drops_the_masters_supplementary_groups(self):
        d = self.start_daemon([harness.hello(worker_count=1)], min_ready=1,
                              preexec=with_master_groups)
        self.assertEqual(sorted(int(g) for g in status_field(d.pid, "Groups")),
                         MASTER_GROUPS, "test bug: the master did not get its groups")
        self.assertEqual(status_field(self.worker(d), "Groups"), [])

    @unittest.skipUnless(os.geteuid() == 0, "needs root")
    def test_worker_as_user_has_only_that_users_groups(self):
        user = harness.throwaway_user(self)
        hello = harness.public_copy(self, harness.HELLO)
        d = self.start_daemon([harness.hello(worker_count=1, user=user.pw_name,
                                             command=hello + " --socket {socket}")],
                              min_ready=1, preexec=with_master_groups)
        pid = self.worker(d)
        self.assertEqual(status_field(pid, "Uid")[:3], [str(user.pw_uid)] * 3)
        self.assertEqual([int(g) for g in status_field(pid, "Groups")], [user.pw_gid])
        self.assertEqual(status_field(pid, "NoNewPrivs"), ["1"])


class PrivilegesConfigTest(harness.DaemonTest):

    def test_check_bad_no_new_privileges_names_its_line(self):
        path = self.write_file("t.conf", (
            'runtime_dir = "%s"\n'
            'service "web" {\n'
            '    listen = { "127.0.0.1:%d" }\n'
            '    command = "socketnaut-hello --socket {socket}"\n'
            '    no_new_privileges = sometimes\n'
            '}\n') % (self.path("run"), harness.free_port()))
        rc, out, err = harness.run_check(path)
        self.assertEqual(rc, 1, err)
        self.assertNotIn("configuration OK", out)
        self.assertTrue([l for l in err.splitlines()
                         if "t.conf:5:" in l and "no_new_privileges" in l], err)


if __name__ == "__main__":
    unittest.main()
