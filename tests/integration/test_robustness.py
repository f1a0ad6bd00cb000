"""Backpressure keeps the master's memory bounded; workers never outlive the master."""

import os
import signal
import time
import unittest

import harness


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RobustnessTest(harness.DaemonTest):

    def test_client_that_stops_reading_does_not_grow_master_memory(self):
        d = self.start_daemon([harness.hello(worker_count=1)], min_ready=1)
        harness.http_ok(self, d.port)
        before = rss_kib(d.pid)
        size = 32 * 1024 * 1024
        c = harness.Conn(d.port, timeout=60)
        self.addCleanup(c.close)
        c.send(harness.build_request("GET", "/bytes?n=%d" % size))
        time.sleep(1.5)  # we read nothing: the relay must stop reading the worker
        grown = rss_kib(d.pid) - before
        self.assertLess(grown, 4096, "master grew %d KiB while a client did not read" % grown)
        r = c.read_response()
        self.assertEqual((r.status, len(r.body)), (200, size))
        self.stop_daemon(d)

    def test_workers_die_with_the_master_even_on_sigkill(self):
        d = self.start_daemon([harness.hello(worker_count=2)], min_ready=2)
        pids = d.workers()
        os.kill(d.pid, signal.SIGKILL)
        d.proc.wait(10)
        harness.wait_until(lambda: not any(harness.proc_alive(p) for p in pids), 10,
                           what="workers to die with the master")


if __name__ == "__main__":
    unittest.main()
