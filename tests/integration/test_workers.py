"""Worker failures: a killed worker only costs its own clients and is replaced; a worker that
keeps failing at once is restarted with backoff, not in a storm."""

import os
import signal
import socket
import time
import unittest

import harness

PATTERN = bytes(range(ord("a"), ord("z") + 1))


def pattern(n):
    return (PATTERN * (n // 26 + 1))[:n]


class WorkerFailureTest(harness.DaemonTest):

    def test_kill9_of_worker_mid_response_closes_only_its_client_and_worker_is_replaced(self):
        d = self.start_daemon([harness.hello(worker_count=2)])
        before = d.wait_ready(2)

        # Two keep-alive connections; least-connections puts them on different workers,
        # and /pid on each tells which.
        survivor = harness.Conn(d.port, timeout=10)
        victim = harness.Conn(d.port, timeout=10)
        self.addCleanup(survivor.close)
        self.addCleanup(victim.close)
        pid_s = int(survivor.request("GET", "/pid", keepalive=True).text)
        pid_v = int(victim.request("GET", "/pid", keepalive=True).text)
        self.assertEqual(sorted([pid_s, pid_v]), before,
                         "two open connections must be on the two different workers")

        # survivor: 40 bytes, one every 50 ms (2 s); victim: 1000 bytes, one every 20 ms.
        survivor.send(harness.build_request("GET", "/drip?n=40&ms=50", keepalive=True))
        victim.send(harness.build_request("GET", "/drip?n=1000&ms=20", keepalive=True))
        deadline = time.monotonic() + 5
        for c in (survivor, victim):
            while b"\r\n\r\n" not in c.buf or len(c.buf.split(b"\r\n\r\n", 1)[1]) < 3:
                self.assertTrue(c.fill(deadline), "connection closed before the drip began")
        self.assertLess(len(survivor.buf.split(b"\r\n\r\n", 1)[1]), 40,
                        "survivor finished before the kill: the test proves nothing")

        os.kill(pid_v, signal.SIGKILL)

        try:
            r = victim.read_response(deadline=time.monotonic() + 10)
            self.fail("victim got a complete response from a killed worker: %r" % r)
        except harness.IncompleteResponse as e:
            self.assertLess(len(e.data), 1000)
        except ConnectionResetError:
            pass
        except socket.timeout:
            self.fail("victim's connection stayed open after its worker was killed")

        r = survivor.read_response(deadline=time.monotonic() + 10)
        self.assertEqual((r.status, r.body), (200, pattern(40)))
        self.assertEqual(int(survivor.request("GET", "/pid", keepalive=True).text), pid_s)

        after = d.wait_workers(2, timeout=10, what="the killed worker to be replaced")
        self.assertIn(pid_s, after)
        self.assertNotIn(pid_v, after)
        harness.wait_until(lambda: "killed by signal 9" in d.log(), 5,
                           what="'killed by signal 9' in the log")
        self.assertEqual(harness.http(d.port, path="/bytes?n=100000").body, pattern(100000))
        survivor.close()
        victim.close()
        self.stop_daemon(d)

    def test_worker_exiting_at_once_is_restarted_with_backoff_not_in_a_storm(self):
        d = self.start_daemon([{"name": "crash", "command": "sh -c 'exit 3'",
                                "min_workers": 1, "max_workers": 1}])
        started = time.monotonic()
        time.sleep(3.0)
        exits = d.log().count("exited with status 3")
        elapsed = time.monotonic() - started
        self.assertTrue(d.alive(), "the daemon died because a worker keeps failing")
        # 100 ms doubling: about 0, 0.1, 0.3, 0.7, 1.5, 3.1 s -> 5 or 6 spawns in 3 s.
        self.assertGreater(exits, 1, "the failing worker was not restarted")
        self.assertLessEqual(exits, 8, "%d exits in %.1f s: restart storm" % (exits, elapsed))
        self.stop_daemon(d)


if __name__ == "__main__":
    unittest.main()
