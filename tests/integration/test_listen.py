"""Listening addresses and clients arriving before any worker is ready."""

import os
import select
import socket
import time
import unittest

import harness


class ListenTest(harness.DaemonTest):

    def test_listen_on_ipv6_loopback_serves_requests(self):
        if not harness.ipv6_available():
            self.skipTest("::1 is not available here")
        port = harness.free_port(socket.AF_INET6)
        d = self.start_daemon([harness.hello(worker_count=1, listen=["[::1]:%d" % port])],
                              wait=False)
        d.wait_listening(port, host="::1")
        r = harness.http(port, path="/", host="::1")
        self.assertEqual(r.status, 200)
        self.assertIn(harness.hello_identity(r.body)[1], d.workers())
        self.assertFalse(harness.port_open(port, "127.0.0.1"),
                         "only [::1] was configured, yet 127.0.0.1 answers")
        self.stop_daemon(d)

    def test_first_request_with_min_workers_0_spawns_a_worker_and_is_served(self):
        d = self.start_daemon([harness.hello(min_workers=0, max_workers=2)])
        time.sleep(0.5)
        self.assertEqual(d.workers(), [], "min_workers = 0 must start no worker")
        r = harness.http(d.port, path="/", timeout=10)
        self.assertEqual(r.status, 200)
        self.assertEqual(harness.hello_identity(r.body)[1], d.workers()[0])
        self.stop_daemon(d)

    def test_client_connecting_before_worker_is_ready_is_served_once_it_is(self):
        go, marker = self.path("go"), self.path("listening")
        d = self.start_daemon([{
            "name": "slow", "worker_count": 1,
            "command": [harness.PYTHON, harness.PYWORKER, "slowhttp", go, marker]}])
        c = harness.Conn(d.port, timeout=15)
        self.addCleanup(c.close)
        c.send(harness.build_request("GET", "/"))
        time.sleep(0.3)
        self.assertFalse(os.path.exists(marker), "the worker listens already: proves nothing")
        readable, _, _ = select.select([c.sock], [], [], 0)
        self.assertEqual((c.buf, readable), (b"", []),
                         "the connection was answered or closed before any worker was ready")
        self.write_file("go", "")  # now the worker starts listening
        r = c.read_response()
        self.assertTrue(os.path.exists(marker))
        self.assertEqual((r.status, r.body), (200, b"slow-start ok\n"))
        c.close()
        self.stop_daemon(d)


if __name__ == "__main__":
    unittest.main()
