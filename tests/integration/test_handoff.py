"""mode = handoff: the master accepts, picks the worker, and hands the client's socket to it over
its control channel; the worker serves it and reports its close, so the pool's counts stay
exact.  Workers: socketnaut-handoff-worker (C, libsocketnaut) and handoff_worker.py (Python
agent: http.server and asyncio)."""

import json
import os
import re
import resource
import shutil
import unittest
import subprocess
import signal
import socket
import threading
import time

import harness

CWORKER = os.path.join(harness.BUILD, "socketnaut-handoff-worker")
PYWORKER = os.path.join(harness.HERE, "handoff_worker.py")
NODEWORKER = os.path.join(harness.HERE, "handoff_worker_node.js")
NODE = shutil.which("node") or shutil.which("nodejs")


def c_fields(body):
    """The C worker's answer: pid=.. id=.. remote=.. local=.. asked=.. getpeername=.."""
    return dict(kv.split("=", 1) for kv in body.decode().split())


class HandoffTest(harness.DaemonTest):

    def service(self, command=None, **kw):
        svc = {"name": "h", "command": command or [CWORKER], "backend": harness.Raw("agent"),
               "mode": harness.Raw("handoff"), "min_workers": 2, "max_workers": 2}
        svc.update(kw)
        return svc

    def start(self, **kw):
        d = self.start_daemon([self.service(**kw)])
        d.wait_ready(kw.get("min_workers", 2))
        return d

    def assert_true_peers(self, conn, local_port, remote, local, asked, seen):
        mine = "127.0.0.1:%d" % conn.sock.getsockname()[1]
        self.assertEqual(remote, mine, "the client as the master told it")
        self.assertEqual(asked, mine, "the client as a peer-info request gives it")
        self.assertEqual(seen, mine, "the worker sees the real client as its peer")
        self.assertEqual(local, "127.0.0.1:%d" % local_port, "the listener it reached")

    def test_c_worker_serves_a_handed_connection_with_true_peer_facts(self):
        d = self.start()
        with harness.Conn(d.port) as c:
            f1 = c_fields(c.request(keepalive=True).body)
            f2 = c_fields(c.request(keepalive=True).body)
            self.assertEqual(f1["pid"], f2["pid"], "one connection, one worker")
            self.assertIn(int(f1["pid"]), d.workers())
            self.assert_true_peers(c, d.port, f1["remote"], f1["local"], f1["asked"],
                                   f1["getpeername"])
        self.stop_daemon(d)

    def check_python_worker(self, kind, command=None, **svc):
        d = self.start(command=command or [harness.PYTHON, PYWORKER, kind], **svc)
        for _ in range(3):
            with harness.Conn(d.port) as c:
                r = c.request(keepalive=True)
                self.assertEqual(r.status, 200)
                j = json.loads(r.body)
                self.assertEqual(j["kind"], kind)
                self.assertIn(j["pid"], d.workers())
                info = j["info"]
                self.assertEqual(info["remote"]["family"], "IPv4")
                self.assert_true_peers(
                    c, d.port, "%s:%d" % (info["remote"]["address"], info["remote"]["port"]),
                    "%s:%d" % (info["local"]["address"], info["local"]["port"]),
                    "%s:%d" % (info["remote"]["address"], info["remote"]["port"]),
                    "%s:%d" % tuple(j["getpeername"]))
                self.assertEqual(c.request(keepalive=True).status, 200, "kept alive")
        self.stop_daemon(d)

    def test_python_http_server_worker_serves_handed_connections(self):
        self.check_python_worker("threading")

    def test_python_asyncio_worker_serves_handed_connections(self):
        self.check_python_worker("asyncio")

    def test_node_worker_serves_connections_handed_on_its_ipc_channel(self):
        if NODE is None:
            self.skipTest("node not installed")
        self.check_python_worker("node", command=[NODE, NODEWORKER],
                                 handoff_channel=harness.Raw("node"))

    def test_node_worker_counts_stay_exact_and_it_drains(self):
        if NODE is None:
            self.skipTest("node not installed")
        d = self.start(command=[NODE, NODEWORKER], handoff_channel=harness.Raw("node"),
                       worker_concurrency=1, queue_timeout="1s")
        for _ in range(2):
            conns = [harness.Conn(d.port) for _ in range(2)]
            pids = {json.loads(c.request(keepalive=True).body)["pid"] for c in conns}
            self.assertEqual(len(pids), 2, "one client each")
            extra = harness.Conn(d.port)
            with self.assertRaises((harness.IncompleteResponse, ConnectionError)):
                extra.request()
            extra.close()
            for c in conns:
                c.close()
        idle = harness.Conn(d.port)
        idle.request(keepalive=True)
        t0 = time.monotonic()
        self.stop_daemon(d)
        self.assertLess(time.monotonic() - t0, 4.5, "idle handed connection ended on drain")
        idle.close()

    # -- exact counts ---------------------------------------------------------------------

    def open_served(self, d, n):
        """n keep-alive connections, each answered (none left queued by a leaked count)."""
        conns = []
        for _ in range(n):
            c = harness.Conn(d.port, timeout=10)
            conns.append(c)
        pids = [c_fields(c.request(keepalive=True).body)["pid"] for c in conns]
        return conns, pids

    def assert_capacity(self, d, n):
        """Exactly n connections fit: n are served at once, one more waits in the queue
        until queue_timeout closes it unanswered."""
        conns, _ = self.open_served(d, n)
        extra = harness.Conn(d.port, timeout=10)
        try:
            with self.assertRaises((harness.IncompleteResponse, ConnectionError),
                                   msg="connection %d should have waited for a slot" % (n + 1)):
                extra.request()
        finally:
            extra.close()
            for c in conns:
                c.close()

    def test_counts_stay_exact_whoever_closes_first(self):
        # 2 workers x worker_concurrency 2: 4 slots; a fifth client waits (queue_timeout 1s).
        d = self.start(worker_concurrency=2, queue_timeout="1s")
        self.assert_capacity(d, 4)
        # Clients close first.
        conns, _ = self.open_served(d, 4)
        for c in conns:
            c.close()
        self.assert_capacity(d, 4)
        # Workers close first (Connection: close), then the clients.
        conns, _ = self.open_served(d, 4)
        for c in conns:
            self.assertEqual(c.request().headers.get("connection"), "close")
        for c in conns:
            c.close()
        self.assert_capacity(d, 4)
        # Mixed, and half-closed clients (shutdown of the write side only).
        conns, _ = self.open_served(d, 4)
        conns[0].close()
        conns[1].request()
        conns[2].sock.shutdown(socket.SHUT_WR)
        conns[3].close()
        time.sleep(0.2)
        for c in conns:
            c.close()
        self.assert_capacity(d, 4)
        harness.wait_until(lambda: d.status()["services"][0]["connections"] == 0, 10,
                           what="no connection counted once all closed")
        self.assertEqual([w["connections"] for w in d.status()["services"][0]["workers"]],
                         [0, 0])
        self.stop_daemon(d)

    def test_a_killed_worker_loses_only_its_own_clients_and_their_records(self):
        d = self.start(worker_concurrency=1, queue_timeout="1s")
        conns, pids = self.open_served(d, 2)
        self.assertNotEqual(pids[0], pids[1], "least connections: one client each")
        os.kill(int(pids[0]), signal.SIGKILL)
        with self.assertRaises((harness.IncompleteResponse, ConnectionError)):
            conns[0].request(keepalive=True)
        r = conns[1].request(keepalive=True)
        self.assertEqual(c_fields(r.body)["pid"], pids[1], "the other worker's client lives on")
        conns[0].close()
        conns[1].close()
        harness.wait_until(lambda: d.log().count(": ready at ") >= 3, 10,
                           what="the replacement ready")
        d.wait_workers(2)
        self.assert_capacity(d, 2)
        self.assertIn("1 handed connection closed with it", d.log())
        self.stop_daemon(d)

    def test_a_worker_reporting_a_close_it_was_not_given_loses_its_channel_only(self):
        # Sends READY, then CLOSED for an id never handed to it.
        script = ("import os,socket,struct,time\n"
                  "s=socket.socket(fileno=int(os.environ['SOCKETNAUT_CONTROL_FD']))\n"
                  "s.sendall(struct.pack('>BBH',1,1,0))\n"
                  "time.sleep(0.5)\n"
                  "s.sendall(struct.pack('>BBH',1,6,7)+b'id=4242')\n"
                  "time.sleep(30)\n")
        path = self.write_file("bogus_close.py", script)
        d = self.start_daemon([self.service(name="bad", command=[harness.PYTHON, path],
                                            min_workers=1, max_workers=1),
                               self.service()])
        harness.wait_until(lambda: "closed for a connection it was not given" in d.log(), 10,
                           what="the bogus close refused")
        with harness.Conn(d.ports["h"]) as c:
            self.assertEqual(c.request().status, 200, "the other service serves on")

    def test_a_worker_that_stops_reading_its_channel_is_taken_out_of_rotation(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, 4096)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        if want < 2500:
            self.skipTest("needs 2500 descriptors, RLIMIT_NOFILE allows %d" % want)
        # Slot 0 takes one connection, then never reads its channel again.
        d = self.start(env=["SN_HANDOFF_STOP_READING=0:1"], queue_timeout="20s")
        first = harness.Conn(d.port)
        stuck = c_fields(first.request(keepalive=True).body)["pid"]
        conns = []
        try:
            def unhealthy():
                return [w["pid"] for w in d.status()["services"][0]["workers"]
                        if w["state"] == "unhealthy"]
            for _ in range(2000):
                conns.append(harness.connect(d.port))
                if len(conns) % 50 == 0 and unhealthy():
                    break
            harness.wait_until(lambda: unhealthy() == [int(stuck)], 10,
                               what="the worker with the full channel out of rotation")
            # From now on every client goes to a worker that takes it.
            for _ in range(10):
                with harness.Conn(d.port) as c:
                    self.assertNotEqual(c_fields(c.request().body)["pid"], stuck)
            # It still serves the connection it took.
            self.assertEqual(c_fields(first.request(keepalive=True).body)["pid"], stuck)
        finally:
            first.close()
            for s in conns:
                s.close()
        self.assertRegex(d.log(), r"worker %s: unhealthy: its control channel is full" % stuck)

    # -- what the master tells of handed connections -----------------------------------------

    def test_access_log_has_a_line_per_handed_connection_without_bytes(self):
        log_path = self.path("access.log")
        d = self.start(access_log=log_path, worker_concurrency=1)

        def lines():
            try:
                with open(log_path) as f:
                    return [l.split(" ") for l in f.read().splitlines() if l]
            except OSError:
                return []

        c = harness.Conn(d.port)
        pid = c_fields(c.request(keepalive=True).body)["pid"]
        port = c.sock.getsockname()[1]
        c.close()
        harness.wait_until(lambda: len(lines()) >= 1, 10, what="one access log line")
        f = lines()[0]
        self.assertEqual(len(f), 11, f)
        self.assertEqual(f[1], "h")
        self.assertEqual(f[2], "127.0.0.1:%d" % port)
        self.assertEqual(f[3], "127.0.0.1:%d" % d.port)
        self.assertEqual(f[4], pid)
        self.assertEqual((f[6], f[8], f[9]), ("-", "-", "-"), "no connect time, no bytes")
        self.assertGreaterEqual(int(f[7]), 0)
        self.assertEqual(f[10], "handed")
        # A worker killed under a handed connection: worker_died.
        c = harness.Conn(d.port)
        pid = c_fields(c.request(keepalive=True).body)["pid"]
        os.kill(int(pid), signal.SIGKILL)
        harness.wait_until(lambda: len(lines()) >= 2, 10, what="a second line")
        self.assertEqual(lines()[1][4], pid)
        self.assertEqual(lines()[1][10], "worker_died")
        c.close()
        self.stop_daemon(d)

    def test_conns_lists_handed_connections_with_their_worker_and_no_bytes(self):
        d = self.start()
        conns, pids = self.open_served(d, 2)
        p = d.ctl("-j", "conns")
        self.assertEqual(p.returncode, 0, p.stderr)
        listed = json.loads(p.stdout)["connections"]
        mine = {"127.0.0.1:%d" % c.sock.getsockname()[1]: pid for c, pid in zip(conns, pids)}
        self.assertEqual(len(listed), 2, listed)
        for e in listed:
            self.assertEqual(e["state"], "handed")
            self.assertEqual(str(e["worker_pid"]), mine[e["client"]])
            self.assertEqual(e["listener"], "127.0.0.1:%d" % d.port)
            self.assertIsNone(e["bytes_in"])
            self.assertIsNone(e["bytes_out"])
            self.assertGreaterEqual(e["age_s"], 0)
        table = d.ctl("conns").stdout
        self.assertEqual(table.count(" handed "), 2, table)
        for c in conns:
            c.close()
        harness.wait_until(lambda: json.loads(d.ctl("-j", "conns").stdout)["connections"] == [],
                           10, what="no connection listed once closed")
        self.stop_daemon(d)

    # -- reload and drain -------------------------------------------------------------------

    def client_loop(self, port, stop, counts, limit=3000):
        for _ in range(limit):
            if stop.is_set():
                return
            try:
                r = harness.http(port, timeout=10)
                counts["ok" if r.status == 200 else "bad"] += 1
            except Exception as e:       # any failure counts
                counts["bad"] += 1
                counts.setdefault("errors", []).append(repr(e))

    def test_reload_and_drain_in_handoff_mode_fail_no_request(self):
        d = self.start()
        stop = threading.Event()
        counts = [{"ok": 0, "bad": 0} for _ in range(3)]
        threads = [threading.Thread(target=self.client_loop, args=(d.port, stop, c))
                   for c in counts]
        for t in threads:
            t.start()
        try:
            for gen in (1, 2):
                time.sleep(0.5)
                d.proc.send_signal(signal.SIGHUP)
                harness.wait_until(lambda: d.log().count(": ready at ") >= 2 + 2 * gen, 20,
                                   what="generation %d ready" % gen)
                harness.wait_until(lambda: len(d.workers()) == 2, 20,
                                   what="the old generation drained and gone")
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        ok = sum(c["ok"] for c in counts)
        bad = sum(c["bad"] for c in counts)
        self.assertGreater(ok, 20)
        self.assertEqual(bad, 0, [c.get("errors", [])[:3] for c in counts])
        # Drain on stop: an idle keep-alive client does not hold the shutdown.
        idle = harness.Conn(d.port)
        idle.request(keepalive=True)
        t0 = time.monotonic()
        self.stop_daemon(d)
        self.assertLess(time.monotonic() - t0, 4.5, "stopped before shutdown_timeout")
        idle.close()


    @unittest.skipIf(shutil.which("wrk") is None, "needs wrk (tools/install-deps installs it)")
    def test_reload_and_drain_under_wrk_fail_no_request(self):
        from test_fleet import parse_wrk
        d = self.start()
        for head in ([], ["-H", "Connection: close"]):
            w = subprocess.Popen(["wrk", "-t1", "-c8", "-d4s"] + head +
                                 ["http://127.0.0.1:%d/" % d.port],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(1.0)
            gen = d.status()["services"][0]["generation"]
            self.assertEqual(d.ctl("-t", "30", "reload").returncode, 0)
            self.assertEqual(d.status()["services"][0]["generation"], gen + 1)
            out, _ = w.communicate(timeout=60)
            n, failed = parse_wrk(out)
            self.assertGreater(n, 100, out)
            self.assertEqual(failed, 0, "requests failed during a reload in handoff mode:\n"
                             + out)
        self.stop_daemon(d)


class HandoffConfigTest(harness.DaemonTest):

    def check(self, body):
        path = self.path("t.conf")
        with open(path, "w") as f:
            f.write('runtime_dir = "%s"\nservice "h" {\n    listen = { "127.0.0.1:%d" }\n'
                    '    command = "%s"\n%s}\n' % (self.path("run"), harness.free_port(),
                                                   CWORKER, body))
        return harness.run_check(path)

    def test_handoff_needs_an_agent_backend_and_says_where(self):
        rc, _, err = self.check("    backend = unix\n    mode = handoff\n")
        self.assertEqual(rc, 1)
        self.assertRegex(err, r"t\.conf:6: mode handoff needs backend agent")

    def test_handoff_refuses_health_checks(self):
        rc, _, err = self.check("    backend = agent\n    mode = handoff\n"
                                "    health_check {\n        type = tcp\n    }\n")
        self.assertEqual(rc, 1)
        self.assertRegex(err, r"t\.conf:6: mode handoff and health_check exclude each other")

    def test_handoff_refuses_proxy_protocol_to_workers(self):
        rc, _, err = self.check("    backend = agent\n    mode = handoff\n    proxy_protocol = v2\n")
        self.assertEqual(rc, 1)
        self.assertRegex(err, r"t\.conf:6: mode handoff and proxy_protocol exclude each other")

    def test_unknown_mode_is_refused(self):
        rc, _, err = self.check("    backend = agent\n    mode = splice\n")
        self.assertEqual(rc, 1)
        self.assertRegex(err, r"t\.conf:6: mode: unknown mode \"splice\"")

    def test_handoff_channel_needs_handoff(self):
        rc, _, err = self.check("    backend = agent\n    handoff_channel = node\n")
        self.assertEqual(rc, 1)
        self.assertRegex(err, r"t\.conf:6: handoff_channel needs mode handoff")

    def test_handoff_with_an_agent_backend_is_ok(self):
        rc, out, err = self.check("    backend = agent\n    mode = handoff\n")
        self.assertEqual(rc, 0, err)
        self.assertIn("configuration OK", out)
