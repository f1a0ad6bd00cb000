"""A worker that abuses its control channel loses that channel, and nothing else suffers:
the master stays up, the worker keeps serving, other workers' clients see no error."""

import os
import threading
import time
import unittest

import harness

HOSTILE = os.path.join(harness.HERE, "hostile.py")


class HostileWorkerTest(harness.DaemonTest):

    def run_hostile(self, mode, expect_log, extra=(), before_stop=None):
        good = harness.hello(name="good", worker_count=2)
        bad = {"name": "bad", "worker_count": 1,
               "command": [harness.PYTHON, HOSTILE, mode] + list(extra)}
        d = self.start_daemon([good, bad], min_ready=3)
        errors, done = [], [0]
        stop = time.monotonic() + 2.0

        def client():
            while time.monotonic() < stop:
                try:
                    r = harness.http(d.ports["good"], path="/", timeout=10)
                    if r.status != 200:
                        errors.append(r.status)
                    done[0] += 1
                except Exception as e:  # noqa: BLE001 - any failure counts
                    errors.append(repr(e))
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [], "clients of the good service saw errors")
        self.assertGreater(done[0], 20, "too few requests went through")
        if expect_log:
            harness.wait_until(lambda: expect_log in d.log(), 10,
                               what="log line %r" % expect_log)
        self.assertTrue(d.alive(), "the master died")
        bad_pids = [p for p in d.workers()]
        # the hostile worker was not killed for it and still serves its own clients
        r = harness.http(d.ports["bad"], path="/", timeout=10)
        self.assertEqual((r.status, r.body), (200, b"hostile ok\n"))
        self.assertEqual(len(bad_pids), 3, "a worker was lost: %s" % bad_pids)
        if before_stop:
            before_stop()
        self.stop_daemon(d)
        return d

    def test_garbage_bytes_close_only_that_workers_channel(self):
        self.run_hostile("garbage", "unsupported protocol version, closing it")

    def test_oversize_frame_closes_only_that_workers_channel(self):
        self.run_hostile("oversize", "message too long, closing it")

    def test_unknown_message_type_closes_only_that_workers_channel(self):
        self.run_hostile("unknown", "unknown message type, closing it")

    def test_master_only_message_from_worker_is_refused(self):
        self.run_hostile("unexpected", "unexpected message from a worker, closing it")

    def test_query_flood_never_read_costs_the_worker_its_channel_not_the_master(self):
        d = self.run_hostile("flood-unread", "the worker does not read it, closing it")
        self.assertIn("service bad: worker", d.log())

    def test_query_flood_that_reads_replies_is_answered_in_full(self):
        out = self.path("replies")

        def replies_counted():
            harness.wait_until(lambda: os.path.exists(out), 60, what="flood to finish")
            with open(out) as f:
                self.assertEqual(f.read(), "50000")
        d = self.run_hostile("flood-read", None, extra=[out], before_stop=replies_counted)
        self.assertNotIn("closing it", d.log())


if __name__ == "__main__":
    unittest.main()
