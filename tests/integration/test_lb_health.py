"""Health for load balancers: /health and /health/SERVICE on the stats listener answer 200
while a service has a ready worker and 503 when it has none or the daemon drains; with
drain_delay, SIGTERM keeps serving clients for that long while the health check fails."""

import os
import signal
import time

import harness

# A worker that never becomes ready: the service has no worker in rotation.
NEVER_READY = "sleep 60"


class LoadBalancerHealthTest(harness.DaemonTest):

    def start(self, services, **opts):
        self.stats_port = harness.free_port()
        opts.setdefault("stats_listen", "127.0.0.1:%d" % self.stats_port)
        d = self.start_daemon(services, opts, wait=False)
        harness.wait_until(lambda: harness.port_open(self.stats_port), 10,
                           what="the stats listener")
        return d

    def health(self, path="/health"):
        return harness.http(self.stats_port, path=path)

    def wait_health(self, status, path="/health", timeout=10):
        harness.wait_until(lambda: self.health(path).status == status, timeout,
                           what="%s answering %d" % (path, status))

    def test_health_is_200_with_a_ready_worker_and_names_each_service(self):
        d = self.start([harness.hello(name="web"), harness.hello(name="api")])
        d.wait_ready(2)
        self.wait_health(200)
        r = self.health()
        self.assertIn(b"web: ok", r.body)
        self.assertIn(b"api: ok", r.body)
        r = self.health("/health/api")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"api: ok\n")
        self.assertEqual(harness.http(self.stats_port, "HEAD", "/health/web").status, 200)

    def test_unknown_service_is_404(self):
        d = self.start([harness.hello(name="web")])
        d.wait_ready(1)
        self.assertEqual(self.health("/health/nosuch").status, 404)
        self.assertEqual(self.health("/health/").status, 404)
        self.assertEqual(self.health("/health/web/x").status, 404)

    def test_service_without_a_ready_worker_is_503_and_fails_the_whole(self):
        d = self.start([harness.hello(name="web"),
                        {"name": "stuck", "command": NEVER_READY, "ready_timeout": "60s"}])
        self.wait_health(200, "/health/web")
        r = self.health("/health/stuck")
        self.assertEqual(r.status, 503)
        self.assertEqual(r.body, b"stuck: no ready worker\n")
        self.assertEqual(self.health("/health/web").status, 200)
        r = self.health()
        self.assertEqual(r.status, 503)
        self.assertIn(b"web: ok", r.body)

    def test_crashed_pool_turns_503_and_back_to_200_when_replaced(self):
        d = self.start([harness.hello(name="web")])
        d.wait_ready(1)
        self.wait_health(200, "/health/web")
        pid = harness.hello_identity(harness.http_ok(self, d.port).body)[1]
        # stop it so it cannot be ready, then kill: the replacement becomes ready later
        os.kill(pid, signal.SIGKILL)
        harness.wait_until(lambda: d.ready_pids() not in ([], [pid]), 20,
                           what="a replacement in rotation")
        self.wait_health(200, "/health/web", timeout=20)
        self.assertNotEqual(harness.hello_identity(harness.http_ok(self, d.port).body)[1], pid)

    def test_drain_delay_fails_health_but_keeps_serving_then_stops(self):
        d = self.start([harness.hello(name="web")], drain_delay="3s")
        d.wait_ready(1)
        self.wait_health(200)
        t0 = time.monotonic()
        os.kill(d.pid, signal.SIGTERM)
        self.wait_health(503, timeout=5)
        self.assertIn(b"draining", self.health().body)
        # clients are still served while load balancers take the host out
        served = 0
        while time.monotonic() - t0 < 2.0 and served < 200:
            harness.http_ok(self, d.port)
            served += 1
        self.assertGreater(served, 0)
        self.assertTrue(d.alive())
        # no second signal (it would cut the drain short): wait for the exit
        self.assertEqual(d.proc.wait(20), 0)
        self.assertGreaterEqual(time.monotonic() - t0, 2.9,
                                "the daemon stopped before drain_delay was over")

    def test_second_sigterm_cuts_the_drain_short(self):
        d = self.start([harness.hello(name="web")], drain_delay="60s")
        d.wait_ready(1)
        os.kill(d.pid, signal.SIGTERM)
        self.wait_health(503, timeout=5)
        t0 = time.monotonic()
        os.kill(d.pid, signal.SIGTERM)
        harness.wait_until(lambda: not d.alive(), 20, what="exit after the second SIGTERM")
        self.assertLess(time.monotonic() - t0, 20)

    def test_bad_drain_delay_names_its_line(self):
        path = self.write_file("bad.conf", 'drain_delay = "soon"\nservice "web" {\n'
                               '    listen = { "127.0.0.1:1" }\n    command = "true"\n}\n')
        rc, _, err = harness.run_check(path)
        self.assertNotEqual(rc, 0)
        self.assertIn("bad.conf:1", err)
        self.assertIn("drain_delay", err)


if __name__ == "__main__":
    import unittest
    unittest.main()
