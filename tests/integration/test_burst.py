"""A burst of many concurrent connections is relayed without losing or mixing a byte."""

import concurrent.futures
import time
import unittest

import harness

CONNECTIONS = 1000
CONCURRENCY = 100
BODY_SIZE = 100 * 1000
TOTAL_SECONDS = 120


class BurstTest(harness.DaemonTest):

    def test_1000_connections_posting_distinct_100kB_bodies_get_them_back_byte_identical(self):
        d = self.start_daemon([harness.hello(min_workers=2, max_workers=4)], min_ready=2)
        deadline = time.monotonic() + TOTAL_SECONDS

        def one(i):
            """Returns the number of bytes echoed, or a string saying what went wrong."""
            body = b"%06d:" % i + harness.random_bytes(BODY_SIZE - 7, i)
            with harness.Conn(d.port, timeout=30) as c:
                r = c.request("POST", "/echo", body)
            if r.status != 200:
                return "request %d: status %d" % (i, r.status)
            if r.body != body:
                return "request %d: %d bytes back, differing from the %d sent" % (
                    i, len(r.body), len(body))
            return len(r.body)

        failures = []
        echoed = 0
        with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as pool:
            futures = [pool.submit(one, i) for i in range(CONNECTIONS)]
            done, pending = concurrent.futures.wait(
                futures, timeout=max(1, deadline - time.monotonic()))
            for f in pending:
                f.cancel()
            for f in done:
                try:
                    outcome = f.result()
                except Exception as e:  # connection reset, timeout, short response
                    outcome = "%s: %s" % (type(e).__name__, e)
                if isinstance(outcome, int):
                    echoed += outcome
                else:
                    failures.append(outcome)
        self.assertFalse(pending, "%d requests not done within %d s" % (len(pending),
                                                                        TOTAL_SECONDS))
        self.assertEqual(failures, [], "%d of %d failed, first: %s"
                         % (len(failures), CONNECTIONS, failures[:5]))
        self.assertEqual(echoed, CONNECTIONS * BODY_SIZE)
        self.assertTrue(d.alive())
        self.assertLessEqual(len(d.workers()), 4)
        self.stop_daemon(d)


if __name__ == "__main__":
    unittest.main()
