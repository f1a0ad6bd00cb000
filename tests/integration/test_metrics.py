"""The stats listener's /metrics: parsed by the Prometheus client library's own parser, with
values that move with real traffic (connections, bytes, a queue timeout, a worker crash,
reloads); and the listener's limits (methods, paths, request size, connections)."""

import os
import signal
import socket
import sys
import time

import harness

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # a python3 other than Debian's: use Debian's python3-prometheus-client
    sys.path.append("/usr/lib/python3/dist-packages")
    from prometheus_client.parser import text_string_to_metric_families


def scrape(port):
    r = harness.http(port, path="/metrics")
    if r.status != 200:
        raise AssertionError("GET /metrics answered %r" % r)
    if not r.headers.get("content-type", "").startswith("text/plain; version=0.0.4"):
        raise AssertionError("content type %r" % r.headers.get("content-type"))
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(families, family, name=None, **labels):
    """The value of the one sample of `family` named `name` (default: the family's name, with
    _total for a counter) whose labels include `labels`."""
    fam = families[family]
    names = (name,) if name else (family, family + "_total")
    found = [s.value for s in fam.samples
             if s.name in names and
             all(s.labels.get(k) == v for k, v in labels.items())]
    if len(found) != 1:
        raise AssertionError("%d samples of %s%s %r" % (len(found), family, name or "", labels))
    return found[0]


def bucket(families, family, le, **labels):
    """The cumulative count of the histogram bucket whose upper bound is `le` seconds."""
    found = [s.value for s in families[family].samples
             if s.name == family + "_bucket" and float(s.labels["le"]) == le and
             all(s.labels.get(k) == v for k, v in labels.items())]
    if len(found) != 1:
        raise AssertionError("%d buckets le=%s of %s %r" % (len(found), le, family, labels))
    return found[0]


class MetricsTest(harness.DaemonTest):

    def start(self, services, **opts):
        self.stats_port = harness.free_port()
        opts["stats_listen"] = "127.0.0.1:%d" % self.stats_port
        d = self.start_daemon(services, opts)
        d.wait_listening(self.stats_port)
        return d

    def test_metrics_parse_and_count_requests_and_bytes(self):
        d = self.start([harness.hello(worker_count=2)])
        d.wait_ready(2)
        fams = scrape(self.stats_port)
        for fam in fams.values():
            self.assertTrue(fam.documentation, "%s has no HELP" % fam.name)
            self.assertIn(fam.type, ("counter", "gauge", "histogram"), fam.name)
        self.assertEqual(value(fams, "socketnaut_connections_accepted", service="web"), 0)
        sent = received = 0
        n = 7
        for i in range(n):
            request = harness.build_request("POST", "/echo", b"y" * (100 * i))
            s = harness.connect(d.port)
            s.sendall(request)
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
            s.close()
            sent += len(request)
            received += len(got)
        harness.wait_until(
            lambda: value(scrape(self.stats_port), "socketnaut_connections_closed",
                          service="web", reason="worker_close") == n, 10,
            what="%d closes counted" % n)
        fams = scrape(self.stats_port)
        self.assertEqual(value(fams, "socketnaut_connections_accepted", service="web"), n)
        self.assertEqual(value(fams, "socketnaut_connections_active", service="web"), 0)
        self.assertEqual(value(fams, "socketnaut_received_bytes", service="web"), sent)
        self.assertEqual(value(fams, "socketnaut_sent_bytes", service="web"), received)
        self.assertEqual(value(fams, "socketnaut_workers_ready", service="web"), 2)
        self.assertEqual(value(fams, "socketnaut_queue_depth", service="web"), 0)
        self.assertEqual(value(fams, "socketnaut_worker_starts", service="web"), 2)
        hist = "socketnaut_queue_wait_seconds"
        self.assertEqual(fams[hist].type, "histogram")
        self.assertEqual(value(fams, hist, hist + "_count", service="web"), n)
        buckets = sorted((float(s.labels["le"]), s.value) for s in fams[hist].samples
                         if s.name == hist + "_bucket")
        self.assertEqual(buckets[-1], (float("inf"), n))
        counts = [c for _, c in buckets]
        self.assertEqual(counts, sorted(counts), "buckets are not cumulative")
        self.assertEqual(value(fams, "socketnaut_reloads", result="ok"), 0)
        self.stop_daemon(d)

    def test_queue_timeout_and_queue_depth_are_counted(self):
        d = self.start([harness.hello(worker_count=1, worker_concurrency=1,
                                      queue_timeout="1s")])
        d.wait_ready(1)
        holder = harness.connect(d.port)
        holder.sendall(harness.build_request("GET", "/sleep?ms=4000"))
        time.sleep(0.2)
        waiting = harness.connect(d.port)
        harness.wait_until(
            lambda: value(scrape(self.stats_port), "socketnaut_queue_depth",
                          service="web") == 1, 10, what="queue depth 1")
        waiting.settimeout(10)
        try:
            self.assertEqual(waiting.recv(1), b"")
        except ConnectionResetError:
            pass
        waiting.close()
        fams = scrape(self.stats_port)
        self.assertEqual(value(fams, "socketnaut_connections_closed", service="web",
                               reason="queue_timeout"), 1)
        self.assertEqual(value(fams, "socketnaut_queue_depth", service="web"), 0)
        hist = "socketnaut_queue_wait_seconds"
        self.assertGreaterEqual(value(fams, hist, hist + "_sum", service="web"), 0.9)
        self.assertEqual(bucket(fams, hist, 0.5, service="web"), 1)  # the holder
        self.assertEqual(bucket(fams, hist, 5.0, service="web"), 2)
        holder.close()
        self.stop_daemon(d)

    def test_worker_crash_exit_and_restart_are_counted(self):
        d = self.start([harness.hello(worker_count=1)])
        pid = d.wait_ready(1)[0]
        s = harness.connect(d.port)
        s.sendall(harness.build_request("GET", "/exit?code=3", keepalive=True))
        self.assertEqual(s.recv(1), b"")
        harness.wait_until(lambda: "worker %d: exited with status 3" % pid in d.log(), 10,
                           what="the crash reaped")
        s.close()
        harness.wait_until(lambda: len([p for p in d.workers() if p != pid]) == 1, 10,
                           what="a replacement")
        fams = harness.wait_until(
            lambda: (lambda f: f if value(f, "socketnaut_workers_ready", service="web") == 1
                     else None)(scrape(self.stats_port)), 10, what="the replacement ready")
        self.assertEqual(value(fams, "socketnaut_worker_exits", service="web", kind="crash"), 1)
        self.assertEqual(value(fams, "socketnaut_worker_exits", service="web", kind="clean"), 0)
        self.assertEqual(value(fams, "socketnaut_worker_starts", service="web"), 2)
        self.assertEqual(value(fams, "socketnaut_worker_restarts", service="web"), 1)
        self.assertEqual(value(fams, "socketnaut_connections_closed", service="web",
                               reason="worker_died"), 1)
        self.stop_daemon(d)

    def test_reloads_are_counted_by_result(self):
        d = self.start([harness.hello(worker_count=1)])
        d.wait_ready(1)
        os.kill(d.pid, signal.SIGHUP)
        harness.wait_until(lambda: value(scrape(self.stats_port), "socketnaut_reloads",
                                         result="ok") == 1, 10, what="a good reload counted")
        with open(d.config_path, "a") as f:
            f.write("this is not an option\n")
        os.kill(d.pid, signal.SIGHUP)
        harness.wait_until(lambda: value(scrape(self.stats_port), "socketnaut_reloads",
                                         result="failed") == 1, 10, what="a bad reload counted")
        self.stop_daemon(d)

    def test_reload_moves_the_stats_listener(self):
        d = self.start([harness.hello(worker_count=1)])
        old, new = self.stats_port, harness.free_port()
        with open(d.config_path) as f:
            text = f.read()
        with open(d.config_path, "w") as f:
            f.write(text.replace("127.0.0.1:%d" % old, "127.0.0.1:%d" % new))
        os.kill(d.pid, signal.SIGHUP)
        d.wait_listening(new)
        self.assertEqual(harness.http(new, path="/metrics").status, 200)
        harness.wait_until(lambda: not harness.port_listening(old), 10,
                           what="the old stats port closed")
        self.stop_daemon(d)

    def test_only_get_and_head_on_metrics_and_404_elsewhere(self):
        d = self.start([harness.hello(worker_count=1)])
        self.assertEqual(harness.http(self.stats_port, path="/nothing").status, 404)
        self.assertEqual(harness.http(self.stats_port, path="/").status, 404)
        head = harness.http(self.stats_port, method="HEAD", path="/metrics")
        self.assertEqual((head.status, head.body), (200, b""))
        post = harness.http(self.stats_port, method="POST", path="/metrics", body=b"x")
        self.assertIn(post.status, (405, 501))
        self.stop_daemon(d)

    def test_oversized_request_is_refused(self):
        d = self.start([harness.hello(worker_count=1)])
        s = harness.connect(self.stats_port)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        s.settimeout(10)
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        s.close()
        self.assertNotIn(b"socketnaut_", got)
        self.assertTrue(got == b"" or got.split(b" ")[1] in (b"400", b"413", b"431"), got[:100])
        harness.http(self.stats_port, path="/metrics")  # still serving
        self.stop_daemon(d)

    def test_a_connection_beyond_the_limit_closes_the_oldest(self):
        d = self.start([harness.hello(worker_count=1)])
        idle = []
        for _ in range(32):
            idle.append(harness.connect(self.stats_port))
        time.sleep(0.3)
        t0 = time.monotonic()
        self.assertEqual(harness.http(self.stats_port, path="/metrics").status, 200)
        self.assertLess(time.monotonic() - t0, 5, "the 33rd connection waited")
        idle[0].settimeout(10)
        self.assertEqual(idle[0].recv(1), b"", "the oldest idle connection is still open")
        idle[-1].sendall(harness.build_request("GET", "/metrics"))
        idle[-1].settimeout(10)
        self.assertTrue(idle[-1].recv(12).startswith(b"HTTP/1.1 200"),
                        "a younger connection was closed too")
        for s in idle:
            s.close()
        self.stop_daemon(d)

    def test_refused_proxy_headers_are_counted(self):
        d = self.start([harness.hello(worker_count=1, accept_proxy="v1",
                                      trusted_proxies=["10.0.0.0/8"])])
        d.wait_ready(1)
        self.assertEqual(value(scrape(self.stats_port), "socketnaut_proxy_refused",
                               service="web"), 0)
        # 127.0.0.1 is no trusted load balancer: closed at once, counted
        for _ in range(3):
            with harness.Conn(d.port) as c:
                c.sock.sendall(b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\r\nGET / HTTP/1.0\r\n\r\n")
                try:
                    self.assertEqual(c.sock.recv(100), b"")
                except ConnectionResetError:
                    pass    # closed with our bytes unread
        harness.wait_until(lambda: value(scrape(self.stats_port), "socketnaut_proxy_refused",
                                         service="web") == 3, 10,
                           what="3 refused headers counted")

    def test_bad_stats_listen_names_its_line(self):
        path = self.write_file("t.conf", 'runtime_dir = "%s"\n\nstats_listen = "localhost"\n'
                               'service "web" {\n  listen = { "127.0.0.1:%d" }\n'
                               '  command = "socketnaut-hello --socket {socket}"\n}\n'
                               % (self.path("run"), harness.free_port()))
        rc, out, err = harness.run_check(path)
        self.assertEqual(rc, 1, err)
        self.assertIn("t.conf:3: stats_listen:", err)


if __name__ == "__main__":
    sys.exit("run through tests/integration/run.py")


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS")


class StatsAbuseTest(harness.DaemonTest):
    """What one client of the stats listener can do to the master: little."""

    def test_pipelined_requests_read_slowly_do_not_grow_the_master(self):
        # evhttp reads on while it writes a reply: the master buffered whatever a client
        # pipelined (about 100 MB in 5 s at 20 MB/s) unless its reading is bounded.
        port = harness.free_port()
        # Under AddressSanitizer freed memory is held in quarantine (256 MB): not a growth.
        asan = ":".join(o for o in (os.environ.get("ASAN_OPTIONS"), "quarantine_size_mb=0")
                        if o)
        d = self.start_daemon([harness.hello(worker_count=1)],
                              {"stats_listen": "127.0.0.1:%d" % port},
                              env={"ASAN_OPTIONS": asan})
        d.wait_listening(port)
        before = rss_mb(d.pid)
        s = harness.connect(port)
        s.setblocking(False)
        reqs = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 2000
        sent, t0, last_read = 0, time.monotonic(), 0.0
        while time.monotonic() - t0 < 5:
            el = time.monotonic() - t0
            if el - last_read > 1:
                last_read = el
                try:
                    for _ in range(64):
                        if not s.recv(65536):
                            break
                except BlockingIOError:
                    pass
            if sent < 20e6 * el:
                try:
                    sent += s.send(reqs)
                except BlockingIOError:
                    time.sleep(0.01)
            else:
                time.sleep(0.005)
        grown = rss_mb(d.pid) - before
        s.close()
        self.assertLess(grown, 32, "the master grew %.0f MB (%.0f MB sent)" % (grown, sent / 1e6))
        self.assertEqual(harness.http(port, path="/health").status, 200)
        self.stop_daemon(d)

    def test_out_of_descriptors_the_stats_and_admin_listeners_pause_instead_of_spinning(self):
        # libevent's listeners retry a failed accept at once: with descriptors gone and a
        # scrape waiting, the master spun at 100% and logged each try.
        port = harness.free_port()
        d = self.start_daemon([harness.hello(worker_count=1)],
                              {"stats_listen": "127.0.0.1:%d" % port}, nofile=64)
        d.wait_ready(1)
        held = harness.exhaust_fds(d)
        waiting = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        admin = socket.socket(socket.AF_UNIX)
        admin.connect(d.admin_socket)
        c0, t0 = harness.cpu_seconds(d.pid), time.monotonic()
        time.sleep(3)
        used = (harness.cpu_seconds(d.pid) - c0) / (time.monotonic() - t0)
        log = d.log()
        self.assertLess(used, 0.3, "the master used %.0f%% of a CPU" % (used * 100))
        self.assertLessEqual(log.count("stats: accept: "), 1, log[-2000:])
        self.assertLessEqual(log.count("admin socket: accept: "), 1, log[-2000:])
        for c in held:
            c.close()
        # Descriptors back: the scrape that waited is answered.
        waiting[0].sendall(harness.build_request("GET", "/health"))
        waiting[0].settimeout(10)
        self.assertTrue(waiting[0].recv(12).startswith(b"HTTP/1.1 200"))
        for c in waiting + [admin]:
            c.close()
        self.assertEqual(d.status()["services"][0]["name"], "web")
        self.stop_daemon(d)
