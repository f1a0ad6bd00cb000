"""Edge cases found in review: shutdown with a connection that outlives every worker,
reloads that rename services, lift max_connections or re-add a removed service, a
scale-to-zero service whose first start fails, a worker pointing the master at itself."""

import os
import signal
import socket
import time
import unittest

import harness

SELFPOINT = os.path.join(harness.HERE, "selfpoint.py")
FLAKY = os.path.join(harness.HERE, "flaky.sh")
BLAST = os.path.join(harness.HERE, "blast.py")


def rewrite(d, old, new):
    with open(d.config_path) as f:
        cfg = f.read()
    assert old in cfg, (old, cfg)
    with open(d.config_path, "w") as f:
        f.write(cfg.replace(old, new))



def running(d):
    """Names of the services not stopping, from socketnautctl status."""
    return [s["name"] for s in d.status()["services"] if s["state"] != "stopping"]

class EdgeTest(harness.DaemonTest):

    def test_shutdown_ends_when_a_connection_outlives_every_worker(self):
        d = self.start_daemon([{"name": "web", "min_workers": 0, "max_workers": 1,
                                "command": [harness.PYTHON, BLAST],
                                "shutdown_timeout": "2s"}])
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect(("127.0.0.1", d.port))
        self.addCleanup(c.close)
        c.sendall(b"go\n")
        # the worker exits while the relay still holds bytes for a client
        # that does not read
        harness.wait_until(lambda: "exited with status 0" in d.log(), 15,
                           what="the worker to exit")
        rc = d.stop(timeout=10)
        self.assertEqual(rc, 0, "socketnautd did not exit after its last connection closed")

    def test_reload_renaming_a_service_keeps_its_port_served(self):
        d = self.start_daemon([harness.hello(name="old", worker_count=1)], min_ready=1)
        port = d.ports["old"]
        rewrite(d, 'service "old"', 'service "new"')
        d.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: running(d) == ["new"], 10,
                           what="the renamed service to listen")
        harness.http_ok(self, port)
        self.assertNotIn("cannot listen", d.log())
        self.stop_daemon(d)

    def test_reload_lifting_max_connections_resumes_accepting(self):
        d = self.start_daemon([harness.hello(worker_count=1, max_connections=1)], min_ready=1)
        held = harness.Conn(d.port, timeout=10)
        self.addCleanup(held.close)
        held.send(harness.build_request("GET", "/", keepalive=True))
        held.read_response()
        rewrite(d, "max_connections = 1", "max_connections = 0")
        d.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: d.service()["generation"] == 1, 10, what="reload")
        r = harness.http(d.port, path="/", timeout=5)
        self.assertEqual(r.status, 200)
        held.close()
        self.stop_daemon(d)

    def test_service_removed_then_readded_serves_after_the_old_worker_exits(self):
        d = self.start_daemon([harness.hello(name="a", worker_count=1),
                               harness.hello(name="web", worker_count=1)], min_ready=2)
        port = d.ports["web"]
        busy = harness.Conn(port, timeout=20)
        self.addCleanup(busy.close)
        busy.send(harness.build_request("GET", "/drip?n=15&ms=100"))
        time.sleep(0.3)
        with open(d.config_path) as f:
            full = f.read()
        head, _, web = full.partition('service "web"')
        with open(d.config_path, "w") as f:
            f.write(head)
        d.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: "web" not in running(d),
                           10, what="web removed")
        with open(d.config_path, "w") as f:
            f.write(full)
        d.proc.send_signal(signal.SIGHUP)
        busy.read_response()
        busy.close()
        harness.wait_until(lambda: [s["state"] for s in d.status()["services"]
                                    if s["name"] == "web"] == ["running"], 15,
                           what="the old web to finish")
        for _ in range(5):
            harness.http_ok(self, port)
        self.stop_daemon(d)

    def test_scale_to_zero_service_whose_first_start_fails_serves_after_the_backoff(self):
        d = self.start_daemon([{"name": "web", "min_workers": 0, "max_workers": 1,
                                "command": FLAKY + " {socket}", "queue_timeout": "20s",
                                "env": ["MARK=" + self.path("mark")]}])
        t0 = time.monotonic()
        r = harness.http(d.port, path="/", timeout=15)
        self.assertEqual(r.status, 200)
        self.assertLess(time.monotonic() - t0, 5, "the client waited for queue_timeout")
        self.stop_daemon(d)

    def test_clients_timing_out_in_the_queue_make_one_log_line_not_one_each(self):
        go, marker = self.path("go"), self.path("marker")
        d = self.start_daemon([{"name": "web", "worker_count": 1, "control": False,
                                "queue_timeout": "300ms", "ready_timeout": "30s",
                                "command": [harness.PYTHON, harness.PYWORKER, "slowhttp",
                                            go, marker]}])
        conns = [harness.connect(d.port) for _ in range(20)]
        for c in conns:
            c.settimeout(5)
            self.assertEqual(c.recv(10), b"", "a queued client was not closed")
            c.close()
        self.assertEqual(d.log().count("for a worker, closed"), 1, d.log())
        self.assertTrue(d.alive())
        self.stop_daemon(d)

    def test_agent_pointing_the_master_at_its_own_listener_is_refused(self):
        port = harness.free_port()
        d = self.start_daemon([{"name": "web", "worker_count": 1, "backend": "agent",
                                "listen": ["127.0.0.1:%d" % port], "port": port,
                                "command": [harness.PYTHON, SELFPOINT],
                                "env": ["POINT_AT=127.0.0.1:%d" % port]},
                               harness.hello(name="good", worker_count=1)])
        harness.wait_until(lambda: "is one of our own listeners" in d.log(), 10,
                           what="the refusal")
        harness.http_ok(self, d.ports["good"])
        self.assertTrue(d.alive())
        self.stop_daemon(d)


if __name__ == "__main__":
    unittest.main()
