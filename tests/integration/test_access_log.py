"""The access log: one line per connection at its close, field by field, for every end reason,
each produced by a real client and a real worker; reopened on SIGUSR1 after a rename."""

import datetime
import os
import re
import signal
import socket
import struct
import sys
import time

import harness

FIELDS = ("time", "service", "client", "listener", "pid", "queue_ms", "connect_ms",
          "duration_ms", "bytes_in", "bytes_out", "end")

# A TCP worker whose accept queue is full and that never accepts: connects to it time out.
NOACCEPT = """import os, socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(0)
time.sleep(120)
"""


def closed_by_peer(s):
    """True once the daemon closed the client socket (EOF, or a reset: it had not read what
    the client sent)."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def parse(line):
    parts = line.split(" ")
    if len(parts) != len(FIELDS):
        raise AssertionError("access log line has %d fields, not %d: %r"
                             % (len(parts), len(FIELDS), line))
    return dict(zip(FIELDS, parts))


class AccessLogTest(harness.DaemonTest):

    def start(self, services, **opts):
        self.log_path = self.path("access.log")
        opts.setdefault("access_log", self.log_path)
        return self.start_daemon(services, opts)

    def lines(self, path=None):
        try:
            with open(path or self.log_path) as f:
                return [l for l in f.read().splitlines() if l]
        except FileNotFoundError:
            return []

    def wait_lines(self, n, path=None, timeout=10):
        harness.wait_until(lambda: len(self.lines(path)) >= n, timeout,
                           what="%d access log lines" % n)
        return [parse(l) for l in self.lines(path)]

    def assert_common(self, rec, port, client=None, pid=None):
        stamp = datetime.datetime.strptime(rec["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
        age = (datetime.datetime.now(datetime.timezone.utc) - stamp).total_seconds()
        self.assertTrue(-5 < age < 120, "time %s is not now" % rec["time"])
        self.assertRegex(rec["time"], r"\.\d{3}Z$")
        self.assertEqual(rec["service"], "web")
        self.assertEqual(rec["listener"], "127.0.0.1:%d" % port)
        if client is not None:
            self.assertEqual(rec["client"], "%s:%d" % client)
        if pid is not None:
            self.assertEqual(rec["pid"], str(pid))
        for key in ("queue_ms", "duration_ms", "bytes_in", "bytes_out"):
            self.assertGreaterEqual(int(rec[key]), 0, key)
        if rec["connect_ms"] != "-":
            self.assertGreaterEqual(int(rec["connect_ms"]), 0)
        self.assertGreaterEqual(int(rec["duration_ms"]), int(rec["queue_ms"]))

    def test_client_close_line_has_every_field(self):
        d = self.start([harness.hello(worker_count=1)])
        d.wait_ready(1)
        request = harness.build_request("GET", "/pid", keepalive=True)
        c = harness.Conn(d.port)
        client = c.sock.getsockname()
        c.send(request)
        r = c.read_response()
        pid = int(r.text)
        c.close()
        rec = self.wait_lines(1)[0]
        self.assert_common(rec, d.port, client, pid)
        self.assertEqual(rec["end"], "client_close")
        self.assertEqual(int(rec["bytes_in"]), len(request))
        self.assertGreater(int(rec["bytes_out"]), len(r.body))  # the head, too
        self.assertLess(int(rec["queue_ms"]), 5000)
        self.assertNotEqual(rec["connect_ms"], "-")
        self.stop_daemon(d)

    def test_worker_close_counts_bytes_each_way(self):
        d = self.start([harness.hello(worker_count=1)])
        d.wait_ready(1)
        body = b"x" * 5000
        request = harness.build_request("POST", "/echo", body)
        s = harness.connect(d.port)
        client = s.getsockname()
        s.sendall(request)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        s.close()  # the worker hung up first
        rec = self.wait_lines(1)[0]
        self.assert_common(rec, d.port, client)
        self.assertEqual(rec["end"], "worker_close")
        self.assertEqual(int(rec["bytes_in"]), len(request))
        self.assertEqual(int(rec["bytes_out"]), len(got))
        self.assertIn(body, got)
        self.stop_daemon(d)

    def test_idle_timeout(self):
        d = self.start([harness.hello(worker_count=1, idle_timeout="300ms")])
        d.wait_ready(1)
        s = harness.connect(d.port)
        client = s.getsockname()
        t0 = time.monotonic()
        self.assertEqual(s.recv(1), b"", "the idle connection was not closed")
        self.assertLess(time.monotonic() - t0, 10)
        rec = self.wait_lines(1)[0]
        s.close()
        self.assert_common(rec, d.port, client)
        self.assertEqual(rec["end"], "idle_timeout")
        self.assertGreaterEqual(int(rec["duration_ms"]), 290)
        self.assertEqual((rec["bytes_in"], rec["bytes_out"]), ("0", "0"))
        self.stop_daemon(d)

    def test_queue_timeout_has_no_worker(self):
        d = self.start([harness.hello(worker_count=1, worker_concurrency=1,
                                      queue_timeout="400ms")])
        d.wait_ready(1)
        holder = harness.connect(d.port)
        holder.sendall(harness.build_request("GET", "/sleep?ms=3000"))
        time.sleep(0.2)
        s = harness.connect(d.port)
        client = s.getsockname()
        self.assertEqual(s.recv(1), b"")
        s.close()
        recs = self.wait_lines(1)
        rec = recs[0]
        self.assert_common(rec, d.port, client)
        self.assertEqual(rec["end"], "queue_timeout")
        self.assertEqual(rec["pid"], "-")
        self.assertEqual(rec["connect_ms"], "-")
        self.assertGreaterEqual(int(rec["queue_ms"]), 390)
        holder.close()
        self.stop_daemon(d)

    def test_refused_when_every_worker_refuses(self):
        d = self.start([{"name": "web", "worker_count": 5,
                         "command": "%s %s unlisten" % (harness.PYTHON, harness.PYWORKER)}])
        pids = d.wait_ready(5)
        for pid in pids:
            os.kill(pid, signal.SIGUSR1)
        time.sleep(0.5)  # each closes its listening socket
        s = harness.connect(d.port)
        client = s.getsockname()
        s.sendall(harness.build_request("GET", "/"))
        self.assertTrue(closed_by_peer(s))
        s.close()
        rec = self.wait_lines(1)[0]
        self.assert_common(rec, d.port, client)
        self.assertEqual(rec["end"], "refused:ECONNREFUSED")
        self.assertEqual(rec["pid"], "-")
        self.stop_daemon(d)

    def test_connect_failed_after_timeouts(self):
        script = self.write_file("noaccept.py", NOACCEPT)
        d = self.start([{"name": "web", "worker_count": 5, "backend": "tcp",
                         "connect_timeout": "300ms",
                         "command": "%s %s" % (harness.PYTHON, script)}])
        d.wait_ready(5)
        s = harness.connect(d.port)
        client = s.getsockname()
        s.sendall(harness.build_request("GET", "/"))
        s.settimeout(30)
        self.assertTrue(closed_by_peer(s))
        s.close()
        rec = self.wait_lines(1)[0]
        self.assert_common(rec, d.port, client)
        self.assertEqual(rec["end"], "connect_failed:ETIMEDOUT")
        self.assertGreaterEqual(int(rec["duration_ms"]), 5 * 290)
        self.stop_daemon(d)

    def test_worker_died_under_its_client(self):
        d = self.start([harness.hello(worker_count=1)])
        pid = d.wait_ready(1)[0]
        s = harness.connect(d.port)
        client = s.getsockname()
        s.sendall(harness.build_request("GET", "/exit?code=3", keepalive=True))
        self.assertEqual(s.recv(1), b"")
        harness.wait_until(lambda: "worker %d: exited with status 3" % pid in d.log(), 10,
                           what="the worker's exit reaped")
        s.close()
        rec = self.wait_lines(1)[0]
        self.assert_common(rec, d.port, client, pid)
        self.assertEqual(rec["end"], "worker_died")
        self.stop_daemon(d)

    def test_shutdown_closes_a_queued_client(self):
        d = self.start([harness.hello(worker_count=1, worker_concurrency=1)])
        d.wait_ready(1)
        holder = harness.connect(d.port)
        holder.sendall(harness.build_request("GET", "/sleep?ms=1500"))
        time.sleep(0.2)
        s = harness.connect(d.port)
        client = s.getsockname()
        time.sleep(0.2)
        d.proc.send_signal(signal.SIGTERM)
        self.assertEqual(s.recv(1), b"")
        s.close()
        holder.close()
        self.assertEqual(d.proc.wait(20), 0)
        recs = {r["client"]: r for r in self.wait_lines(2)}
        rec = recs["%s:%d" % client]
        self.assert_common(rec, d.port, client)
        self.assertEqual(rec["end"], "shutdown")
        self.assertEqual(rec["pid"], "-")

    def test_error_when_the_client_resets(self):
        d = self.start([harness.hello(worker_count=1)])
        d.wait_ready(1)
        s = harness.connect(d.port)
        client = s.getsockname()
        s.sendall(harness.build_request("GET", "/sleep?ms=1000"))
        time.sleep(0.3)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST
        rec = self.wait_lines(1)[0]
        self.assert_common(rec, d.port, client)
        self.assertEqual(rec["end"], "error:ECONNRESET")
        self.stop_daemon(d)

    def test_reopened_on_sigusr1_after_rename(self):
        d = self.start([harness.hello(worker_count=1)])
        d.wait_ready(1)
        harness.http_ok(self, d.port, "/")
        self.wait_lines(1)
        os.rename(self.log_path, self.log_path + ".1")
        harness.http_ok(self, d.port, "/")
        self.wait_lines(2, self.log_path + ".1")  # still written to the renamed file
        os.kill(d.pid, signal.SIGUSR1)
        harness.wait_until(lambda: "access log %s reopened" % self.log_path in d.log(), 10,
                           what="the reopen")
        for _ in range(3):
            harness.http_ok(self, d.port, "/")
        self.assertEqual(len(self.wait_lines(3)), 3)
        self.assertEqual(len(self.lines(self.log_path + ".1")), 2)
        self.stop_daemon(d)

    def test_a_service_may_name_its_own_access_log_or_none(self):
        other = self.path("api.log")
        d = self.start([harness.hello(worker_count=1),
                        harness.hello(name="api", worker_count=1, access_log=other),
                        harness.hello(name="quiet", worker_count=1, access_log="off")])
        d.wait_ready(3)
        for svc in d.services:
            harness.http_ok(self, svc["port"], "/")
        web = self.wait_lines(1)
        api = self.wait_lines(1, other)
        time.sleep(0.5)  # a batch is written within 0.1 s: a line for quiet would be there
        self.assertEqual([r["service"] for r in self.wait_lines(1)], ["web"])
        self.assertEqual([r["service"] for r in self.wait_lines(1, other)], ["api"])
        self.assertEqual(api[0]["listener"], "127.0.0.1:%d" % d.ports["api"])
        self.assertEqual(web[0]["listener"], "127.0.0.1:%d" % d.ports["web"])
        self.stop_daemon(d)

    def test_reload_moves_the_access_log(self):
        d = self.start([harness.hello(worker_count=1)])
        d.wait_ready(1)
        harness.http_ok(self, d.port, "/")
        self.wait_lines(1)
        moved = self.path("moved.log")
        with open(d.config_path) as f:
            text = f.read()
        with open(d.config_path, "w") as f:
            f.write(text.replace(self.log_path, moved))
        os.kill(d.pid, signal.SIGHUP)
        harness.wait_until(lambda: "starting worker generation 1" in d.log(), 10,
                           what="the reload")
        harness.http_ok(self, d.port, "/")
        self.assertEqual(len(self.wait_lines(1, moved)), 1)
        self.assertEqual(len(self.lines()), 1)
        self.stop_daemon(d)

    def test_off_by_default_writes_nothing(self):
        d = self.start_daemon([harness.hello(worker_count=1)])
        d.wait_ready(1)
        harness.http_ok(self, d.port, "/")
        self.stop_daemon(d)
        self.assertEqual([f for f in os.listdir(self.tmp) if "access" in f], [])

    def test_full_disk_is_logged_at_most_once_a_second_and_serving_goes_on(self):
        d = self.start([harness.hello(worker_count=1)], access_log="/dev/full")
        d.wait_ready(1)
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 2.5 and n < 1000:
            harness.http_ok(self, d.port, "/")
            n += 1
            time.sleep(0.02)
        harness.wait_until(lambda: "access log /dev/full: No space left" in d.log(), 10,
                           what="the failure logged")
        elapsed = time.monotonic() - t0
        warnings = d.log().count("access log /dev/full: No space left")
        self.assertGreaterEqual(n, 10)
        self.assertLessEqual(warnings, int(elapsed) + 2,
                             "%d warnings in %.1f s" % (warnings, elapsed))
        self.stop_daemon(d)

    def test_unwritable_access_log_stops_the_start_with_its_reason(self):
        d = self.start_daemon([harness.hello(worker_count=1)],
                              {"access_log": self.path("missing", "access.log")}, wait=False)
        self.assertEqual(d.proc.wait(20), 1)
        # found by the configuration check (as -t finds it), with its line
        self.assertRegex(d.log(), r"socketnaut\.conf:\d+: access_log: cannot create %s: "
                         r"No such file or directory" % re.escape(self.path("missing",
                                                                              "access.log")))
        rc, _, err = harness.run_check(d.config_path)
        self.assertEqual(rc, 1, err)
        self.assertIn("access_log: cannot create", err)

    def test_bad_access_log_value_names_its_line(self):
        path = self.write_file("t.conf", 'runtime_dir = "%s"\naccess_log = "relative.log"\n'
                               'service "web" {\n  listen = { "127.0.0.1:%d" }\n'
                               '  command = "socketnaut-hello --socket {socket}"\n}\n'
                               % (self.path("run"), harness.free_port()))
        rc, out, err = harness.run_check(path)
        self.assertEqual(rc, 1, err)
        self.assertIn("t.conf:2: access_log must be off, syslog or an absolute file path", err)
        path = self.write_file("t.conf", 'runtime_dir = "%s"\n'
                               'service "web" {\n  listen = { "127.0.0.1:%d" }\n'
                               '  command = "socketnaut-hello --socket {socket}"\n'
                               '  access_log = "web.log"\n}\n'
                               % (self.path("run"), harness.free_port()))
        rc, out, err = harness.run_check(path)
        self.assertEqual(rc, 1, err)
        self.assertIn("t.conf:5: access_log must be off, syslog or an absolute file path", err)


if __name__ == "__main__":
    sys.exit("run through tests/integration/run.py")
