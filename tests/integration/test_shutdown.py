"""SIGTERM: stop listening, let open requests finish, stop every worker, exit 0."""

import os
import signal
import stat
import subprocess
import threading
import time
import unittest

import harness


class ShutdownTest(harness.DaemonTest):

    def test_sigterm_lets_open_request_finish_then_exits_0_with_no_worker_left(self):
        d = self.start_daemon([harness.hello(worker_count=2)],
                              global_opts={"shutdown_timeout": "10s"}, min_ready=2)
        workers = d.workers()
        result = []

        def slow():
            try:
                result.append(harness.http(d.port, path="/sleep?ms=1500", timeout=15))
            except Exception as e:
                result.append(e)

        t = threading.Thread(target=slow, daemon=True)
        t.start()
        time.sleep(0.4)  # the request is in the worker, sleeping
        self.assertEqual(result, [], "the slow request finished too early")
        t_term = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)

        harness.wait_until(lambda: not harness.port_open(d.port, timeout=0.2), 2.0,
                           what="the listener to close right after SIGTERM")
        t.join(15)
        self.assertEqual(len(result), 1)
        r = result[0]
        self.assertIsInstance(r, harness.Response, "the open request failed: %r" % r)
        self.assertEqual((r.status, r.body), (200, b"slept 1500\n"))

        try:
            rc = d.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.fail("socketnautd did not exit within 10 s of SIGTERM")
        self.assertEqual(rc, 0)
        took = time.monotonic() - t_term
        self.assertGreaterEqual(took, 1.0, "exited before the open request could finish")

        harness.wait_until(lambda: not any(harness.proc_alive(p) for p in workers), 3,
                           what="workers %s to be gone" % workers)
        self.assertFalse(harness.port_open(d.port))
        left = []
        for root, _, files in os.walk(d.runtime_dir):
            left += [os.path.join(root, f) for f in files
                     if stat.S_ISSOCK(os.lstat(os.path.join(root, f)).st_mode)]
        self.assertEqual(left, [], "worker sockets left behind")


if __name__ == "__main__":
    unittest.main()
