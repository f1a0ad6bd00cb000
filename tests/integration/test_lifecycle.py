"""Lifecycle: systemd notification, reload with worker generations, log reopening,
max_connections, a worker that never becomes ready, workers run as another user."""

import os
import pwd
import select
import signal
import socket
import time
import unittest

import harness



def running(d):
    """Names of the services not stopping, from socketnautctl status."""
    return [s["name"] for s in d.status()["services"] if s["state"] != "stopping"]

class NotifyListener:
    """A NOTIFY_SOCKET of our own: collects the datagrams the daemon sends."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages = []

    def collect(self):
        for _ in range(1000):
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                return self.messages
        return self.messages

    def wait_for(self, text, timeout=10):
        harness.wait_until(lambda: any(text in m for m in self.collect()), timeout,
                           what="sd_notify %r" % text)

    def close(self):
        self.sock.close()


class LifecycleTest(harness.DaemonTest):

    def test_sd_notify_ready_after_min_pool_status_reloading_and_stopping(self):
        n = NotifyListener(self.path("notify"))
        self.addCleanup(n.close)
        d = self.start_daemon([harness.hello(min_workers=2, max_workers=3)],
                              env={"NOTIFY_SOCKET": n.path})
        n.wait_for("READY=1")
        ready_at = next(i for i, m in enumerate(n.messages) if m == "READY=1")
        self.assertTrue(any("STATUS=web: 2/2 ready" in m for m in n.messages[:ready_at]),
                        "READY=1 came before both minimum workers were ready: %s" % n.messages)
        d.proc.send_signal(signal.SIGHUP)
        n.wait_for("RELOADING=1")
        harness.wait_until(lambda: n.collect().count("READY=1") >= 2, 10,
                           what="READY=1 after the reload")
        self.stop_daemon(d)
        n.wait_for("STOPPING=1")

    def test_sighup_starts_a_new_generation_and_retires_the_old_one(self):
        d = self.start_daemon([harness.hello(worker_count=2, env=["GEN=one"])], min_ready=2)
        old = d.workers()
        self.assertEqual(harness.http(d.port, path="/env?name=GEN").body, b"one\n")
        # a long response keeps one old worker busy across the reload
        busy = harness.Conn(d.port, timeout=20)
        self.addCleanup(busy.close)
        busy.send(harness.build_request("GET", "/drip?n=20&ms=100"))
        time.sleep(0.3)
        cfg = open(d.config_path).read().replace('"GEN=one"', '"GEN=two"')
        with open(d.config_path, "w") as f:
            f.write(cfg)
        d.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: harness.http(d.port, path="/env?name=GEN").body == b"two\n",
                           10, what="new generation serving")
        r = busy.read_response()
        self.assertEqual((r.status, len(r.body)), (200, 20),
                         "a request in flight on the old generation was cut")
        busy.close()
        harness.wait_until(lambda: not set(old) & set(d.workers()), 10,
                           what="old generation gone")
        self.assertEqual(len(d.wait_workers(2)), 2)
        self.assertEqual(d.service()["generation"], 1)
        self.stop_daemon(d)

    def test_sighup_with_a_broken_file_keeps_the_running_configuration(self):
        d = self.start_daemon([harness.hello(worker_count=1)], min_ready=1)
        before = d.workers()
        with open(d.config_path, "a") as f:
            f.write("bogus_option = 1\n")
        d.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: d.status()["reloads"]["failed"] == 1, 10,
                           what="reload failure")
        self.assertRegex(d.log(), r'socketnaut\.conf:\d+: unknown option "bogus_option"')
        harness.http_ok(self, d.port)
        self.assertEqual(d.workers(), before, "workers changed after a failed reload")
        self.stop_daemon(d)

    def test_sighup_with_a_file_cut_short_keeps_every_service(self):
        # An unclosed /*, a NUL byte, a missing final }: each used to drop service b
        # silently on reload; each must fail the reload and name its line.
        d = self.start_daemon([harness.hello(name="a", worker_count=1),
                               harness.hello(name="b", worker_count=1)], min_ready=2)
        good = open(d.config_path).read()
        b_line = good.splitlines().index('service "b" {') + 1
        before = d.workers()
        cuts = [(good.replace('service "b"', '/* off\nservice "b"'), "comment"),
                (good.replace('service "b"', '\0\nservice "b"'), "NUL byte"),
                (good.rstrip().rstrip("}"), "not closed")]
        for n, (text, what) in enumerate(cuts, 1):
            with open(d.config_path, "w") as f:
                f.write(text)
            d.proc.send_signal(signal.SIGHUP)
            harness.wait_until(lambda: d.status()["reloads"]["failed"] >= n, 10,
                               what="reload failure %d (%s)" % (n, what))
            self.assertRegex(d.log(), r"socketnaut\.conf:%d: [^\n]*%s" % (b_line, what))
            harness.http_ok(self, d.ports["b"])
        self.assertEqual(running(d), ["a", "b"])
        self.assertEqual(d.workers(), before, "workers changed after a failed reload")
        self.stop_daemon(d)

    def test_sighup_adds_and_removes_services(self):
        d = self.start_daemon([harness.hello(name="a", worker_count=1)], min_ready=1)
        port_b = harness.free_port()
        cfg = open(d.config_path).read().replace('service "a"', 'service "b"')
        cfg = cfg.replace("127.0.0.1:%d" % d.ports["a"], "127.0.0.1:%d" % port_b)
        with open(d.config_path, "w") as f:
            f.write(cfg)
        d.proc.send_signal(signal.SIGHUP)
        d.wait_listening(port_b)
        harness.http_ok(self, port_b)
        harness.wait_until(lambda: running(d) == ["b"], 10,
                           what="service a removed")
        self.assertFalse(harness.port_open(d.ports["a"]), "removed service still listens")
        self.stop_daemon(d)

    def test_sigusr1_reopens_the_log_file(self):
        logfile = self.path("daemon.log")
        # without -d, which would keep the log on stderr
        d = harness.Daemon(self.tmp, [harness.hello(worker_count=1)],
                           {"log_target": logfile, "log_level": "info"})
        self.daemons.append(d)
        d.start(debug=False)
        d.wait_listening()
        harness.wait_until(lambda: os.path.exists(logfile) and "ready" in open(logfile).read(),
                           10, what="log file written")
        os.rename(logfile, logfile + ".1")
        d.proc.send_signal(signal.SIGUSR1)
        harness.wait_until(lambda: os.path.exists(logfile), 10, what="log file reopened")
        self.stop_daemon(d)
        self.assertIn("stopped", open(logfile).read())
        self.assertNotIn("stopped", open(logfile + ".1").read())

    def test_max_connections_holds_extra_clients_until_a_slot_frees(self):
        d = self.start_daemon([harness.hello(worker_count=2, max_connections=2)], min_ready=2)
        held = [harness.Conn(d.port, timeout=20) for _ in range(2)]
        for c in held:
            self.addCleanup(c.close)
            c.send(harness.build_request("GET", "/", keepalive=True))
            self.assertEqual(c.read_response().status, 200)
        third = harness.Conn(d.port, timeout=20)
        self.addCleanup(third.close)
        third.send(harness.build_request("GET", "/"))
        readable, _, _ = select.select([third.sock], [], [], 0.7)
        self.assertEqual(readable, [], "a third connection was served past the limit")
        held[0].close()
        self.assertEqual(third.read_response().status, 200)
        held[1].close()
        self.stop_daemon(d)

    def test_worker_that_never_listens_is_killed_at_ready_timeout_and_replaced(self):
        never = self.write_file("never.sh", "#!/bin/sh\nexec sleep 60\n", 0o755)
        good = harness.hello(name="good", worker_count=1)
        bad = {"name": "bad", "worker_count": 1, "command": never, "ready_timeout": "500ms"}
        d = self.start_daemon([good, bad])
        harness.wait_until(lambda: d.log().count("not ready after") >= 2, 15,
                           what="two ready timeouts")
        self.assertIn("next worker start in", d.log())
        harness.http_ok(self, d.ports["good"])
        self.stop_daemon(d)

    def test_binary_removed_after_start_is_one_clear_error_per_backed_off_attempt(self):
        script = self.write_file("srv.sh", "#!/bin/sh\nexec socketnaut-hello --socket \"$1\"\n",
                                 0o755)
        d = self.start_daemon([{"name": "web", "worker_count": 1,
                                "command": script + " {socket}"}], min_ready=1)
        harness.http_ok(self, d.port)
        os.unlink(script)
        os.kill(d.workers()[0], signal.SIGKILL)
        time.sleep(2.5)
        log = d.log()
        fails = log.count("cannot execute %s: No such file or directory" % script)
        self.assertGreaterEqual(fails, 2, "exec failure not reported clearly")
        self.assertLessEqual(fails, 6, "exec failures storm instead of backing off")
        self.assertTrue(d.alive())
        self.stop_daemon(d)

    @unittest.skipUnless(os.geteuid() == 0, "switching users needs root")
    def test_workers_run_as_the_configured_user(self):
        user = "nobody"
        pw = pwd.getpwnam(user)
        hello = harness.public_copy(self, harness.HELLO)
        d = self.start_daemon([harness.hello(worker_count=1, user=user,
                                             command=hello + " --socket {socket}")],
                              min_ready=1)
        harness.http_ok(self, d.port)
        pid = d.workers()[0]
        with open("/proc/%d/status" % pid) as f:
            uid_line = next(line for line in f if line.startswith("Uid:"))
        self.assertEqual(int(uid_line.split()[1]), pw.pw_uid)
        st = os.stat(os.path.join(d.runtime_dir, "web"))
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (pw.pw_uid, 0o700))
        self.stop_daemon(d)


if __name__ == "__main__":
    unittest.main()
