"""The pool grows under load up to max_workers, never beyond, and shrinks back when idle."""

import threading
import time
import unittest

import harness


class ScalingTest(harness.DaemonTest):

    def test_pool_grows_to_exactly_max_workers_under_load_and_shrinks_to_min_when_idle(self):
        d = self.start_daemon([harness.hello(min_workers=1, max_workers=4,
                                             workers_checking_interval="1s")])
        d.wait_workers(1)
        time.sleep(1.2)  # a checking interval passes: min_workers is kept while idle
        self.assertEqual(len(d.workers()), 1, "an idle pool must keep min_workers")

        samples = []
        stop = threading.Event()

        def sample():
            for _ in range(2000):  # bounded: at most ~100 s at 50 ms
                if stop.is_set():
                    return
                samples.append(len(d.workers()))
                time.sleep(0.05)

        results = [None] * 8

        def slow(i):
            try:
                results[i] = harness.http(d.port, path="/sleep?ms=1500", timeout=30)
            except Exception as e:
                results[i] = e

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        clients = [threading.Thread(target=slow, args=(i,), daemon=True) for i in range(8)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(40)
        loaded = list(samples)
        for i, r in enumerate(results):
            self.assertIsInstance(r, harness.Response, "request %d: %r" % (i, r))
            self.assertEqual((r.status, r.body), (200, b"slept 1500\n"), "request %d" % i)
        self.assertEqual(max(loaded), 4, "pool size samples under load: %s" % loaded)

        # Idle again: back to min_workers within a few checking intervals, never below it.
        d.wait_workers(1, timeout=10, what="the pool to shrink back to 1 worker")
        time.sleep(1.5)
        stop.set()
        sampler.join(5)
        self.assertLessEqual(max(samples), 4, "pool exceeded max_workers: %s" % samples)
        self.assertEqual(len(d.workers()), 1, "pool did not stay at min_workers")
        self.assertGreaterEqual(min(samples[len(loaded):] or [1]), 1,
                                "pool fell below min_workers while shrinking")
        self.assertEqual(harness.http(d.port, path="/pid").status, 200)
        self.stop_daemon(d)


if __name__ == "__main__":
    unittest.main()
