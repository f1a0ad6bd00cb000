"""A worker that abuses its control channel loses that channel, and nothing else suffers:
the master stays up, the worker keeps serving, other workers' clients see no error."""

import os
import re
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
        errors, _, done = harness.load_until(d.ports["good"], time.monotonic() + 2.0,
                                             threads=4)
        self.assertEqual(errors, [], "clients of the good service saw errors")
        self.assertGreater(done, 20, "too few requests went through")
        if expect_log:
            harness.wait_until(lambda: expect_log in d.log(), 30,
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

    def test_repeated_ready_closes_the_channel_with_one_line(self):
        d = self.run_hostile("ready-repeat", "control channel: ready sent twice, closing it")
        log = d.log()
        self.assertEqual(log.count("ready sent twice"), 1, "one line, not one per frame")
        # the good service's per-request debug lines grow with the machine's speed
        theirs = "\n".join(l for l in log.splitlines() if "service good:" not in l)
        self.assertLess(len(theirs), 1 << 20, "the daemon's log grew past 1 MB")

    def test_drained_nobody_asked_for_closes_the_channel_with_one_line(self):
        d = self.run_hostile("drained-unasked",
                             "control channel: drained without a drain request, closing it")
        log = d.log()
        self.assertEqual(log.count("drained"), 1, "one line, not one per frame")
        # the good service's per-request debug lines grow with the machine's speed
        theirs = "\n".join(l for l in log.splitlines() if "service good:" not in l)
        self.assertLess(len(theirs), 1 << 20, "the daemon's log grew past 1 MB")

    def flood_cpu(self, mode):
        """Master CPU and wall time of a 4 s flood of the given hostile.py mode."""
        out = self.path(mode)
        d = self.start_daemon([{"name": "bad", "worker_count": 1,
                                "command": [harness.PYTHON, HOSTILE, mode, out]}], min_ready=1)
        cpu0, t0 = harness.cpu_seconds(d.pid), time.monotonic()
        with open(out + ".go", "w"):
            pass
        harness.wait_until(lambda: os.path.exists(out), 30, what="the flood to end")
        cpu, wall = harness.cpu_seconds(d.pid) - cpu0, time.monotonic() - t0
        with open(out) as f:
            sent = int(f.read())
        r = harness.http(d.port, path="/", timeout=10)
        self.assertEqual((r.status, r.body), (200, b"hostile ok\n"))
        self.stop_daemon(d)
        print("\n  %s: %d frames sent; master CPU %.2f s in %.1f s" % (mode, sent, cpu, wall))
        return cpu, wall

    def test_floods_of_frames_that_cost_no_log_budget_are_paused_too(self):
        # LOG frames below log_level and HELLO frames are free to the budget: read flat out
        # they took more than half a CPU.  A turn of such frames pauses the channel.
        for mode in ("debug-flood", "hello-flood"):
            cpu, wall = self.flood_cpu(mode)
            self.assertLess(cpu, wall / 5, "%s: master CPU %.2f s in %.2f s" % (mode, cpu, wall))

    def test_log_flood_is_rate_limited_and_the_master_stays_responsive(self):
        out = self.path("flood")
        good = harness.hello(name="good", worker_count=2)
        bad = {"name": "bad", "worker_count": 1,
               "command": [harness.PYTHON, HOSTILE, "log-flood", out]}
        d = self.start_daemon([good, bad], min_ready=3)
        harness.http_ok(self, d.ports["good"])
        size0, cpu0, t0 = os.path.getsize(d.log_path), harness.cpu_seconds(d.pid), time.monotonic()
        with open(out + ".go", "w"):
            pass
        # during the 4 s flood and a little after
        errors, slowest, done = harness.load_until(d.ports["good"], t0 + 5.0)
        harness.wait_until(lambda: os.path.exists(out), 30, what="the flood to end")
        cpu = harness.cpu_seconds(d.pid) - cpu0
        wall = time.monotonic() - t0
        with open(out) as f:
            sent = int(f.read())
        grown = os.path.getsize(d.log_path) - size0
        self.assertEqual(errors, [], "clients of the good service saw errors")
        self.assertGreater(done, 20, "too few requests went through")
        # generous: the master may take seconds per request under a flood, never more
        self.assertLess(slowest, 3.0, "a request to the good service took %.2f s" % slowest)
        # budget: 200 lines at once, 100 a second, a 1 KB line counting as 4: about 300 KB
        self.assertLess(grown, 2 << 20, "%d LOG frames grew the log by %d bytes" % (sent, grown))
        # generous: a flood costs the master at most a third of a core
        self.assertLess(cpu, wall / 3, "master CPU %.2f s in %.2f s of flood" % (cpu, wall))
        harness.wait_until(lambda: "log lines suppressed" in d.log(), 10,
                           what="the suppressed-lines summary")
        log = d.log()
        told = sum(int(n) for n in re.findall(r"service bad: worker \d+: (\d+) log lines suppressed",
                                               log))
        written = len(re.findall(r"service bad: worker \d+: flood ", log))
        self.assertGreater(written, 0, "no line of the worker was logged")
        self.assertLessEqual(written + told, sent, "more lines told than sent")
        self.assertTrue(d.alive(), "the master died")
        r = harness.http(d.ports["bad"], path="/", timeout=10)
        self.assertEqual((r.status, r.body), (200, b"hostile ok\n"))
        self.stop_daemon(d)
        # every line dropped was told by the time the worker is gone
        log = d.log()
        told = sum(int(n) for n in re.findall(r"service bad: worker \d+: (\d+) log lines suppressed",
                                               log))
        written = len(re.findall(r"service bad: worker \d+: flood ", log))
        self.assertEqual(written + told, sent, "lines written and told do not add up")

    def test_worker_log_rate_sets_each_workers_log_budget(self):
        out = self.path("burst")
        bad = {"name": "bad", "worker_count": 1, "worker_log_rate": "5/s burst 5",
               "command": [harness.PYTHON, HOSTILE, "log-burst", out]}
        d = self.start_daemon([bad], min_ready=1)
        harness.wait_until(lambda: os.path.exists(out), 30, what="the burst to be sent")
        pattern = r"service bad: worker \d+: (\d+) log lines suppressed"
        harness.wait_until(lambda: re.search(pattern, d.log()), 10,
                           what="the suppressed-lines summary")
        self.stop_daemon(d)
        log = d.log()
        told = sum(int(n) for n in re.findall(pattern, log))
        written = len(re.findall(r"service bad: worker \d+: burst \d+", log))
        # a burst of 5 and the 5 a second that refill while the 50 arrive: a line or two
        self.assertGreaterEqual(written, 5, "the burst was not allowed")
        self.assertLessEqual(written, 8, "more than the burst went through")
        self.assertEqual(written + told, 50, "lines written and told do not add up")


if __name__ == "__main__":
    unittest.main()
