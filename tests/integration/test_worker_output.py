"""What a worker writes on stdout and stderr goes into the master's log, one line at a time,
tagged with its service and worker, within its log budget, without ever stalling the master."""

import os
import re
import signal
import time

import harness

NOISY = os.path.join(harness.HERE, "noisy.py")


class WorkerOutputTest(harness.DaemonTest):

    def noisy(self, mode, name="noisy", **kw):
        svc = {"name": name, "worker_count": 1,
               "command": [harness.PYTHON, NOISY, mode] + kw.pop("extra", [])}
        svc.update(kw)
        return svc

    def test_worker_stdout_and_stderr_lines_are_logged_tagged_with_service_and_worker(self):
        d = self.start_daemon([self.noisy("say")], min_ready=1)
        pid = d.wait_ready(1)[0]
        tag = "service noisy: worker %d: output: " % pid
        harness.wait_until(lambda: tag + "windows line" in d.log(), 10,
                           what="the worker's lines in the log")
        log = d.log()
        self.assertIn(tag + "hello on stdout\n", log)
        self.assertIn(tag + "hello on stderr\n", log)
        self.assertIn(tag + "windows line\n", log, "a \\r\\n line end is one line end")
        harness.http_ok(self, d.port)
        self.stop_daemon(d)

    def test_worker_output_long_line_is_cut_and_marked(self):
        d = self.start_daemon([self.noisy("say")], min_ready=1)
        harness.wait_until(lambda: "windows line" in d.log(), 10, what="the worker's lines")
        m = re.search(r"output: long (z*) \[cut at 1024 bytes\]\n", d.log())
        self.assertIsNotNone(m, "no cut line in the log")
        self.assertEqual(len("long ") + len(m.group(1)), 1024)
        self.assertNotIn("zzz\n", d.log(), "the rest of the long line was logged")
        self.stop_daemon(d)

    def test_worker_output_last_words_of_a_crashing_worker_appear_before_its_exit(self):
        d = self.start_daemon([self.noisy("last-words")], wait=False)
        harness.wait_until(lambda: "exited with status 3" in d.log(), 15,
                           what="the worker's exit")
        log = d.log()
        for n in (1, 2, 3):
            self.assertIn("output: last words %d" % n, log)
        first = log.index("exited with status 3")
        self.assertLess(log.index("output: last words 3 without newline"), first,
                        "the last words come before the line about the exit")

    def test_worker_output_pipe_held_by_a_grandchild_is_closed_when_the_worker_goes(self):
        out = self.path("orphan")
        d = self.start_daemon([self.noisy("orphan", extra=[out])], min_ready=1,
                              global_opts={"worker_cgroup": harness.Raw("off")})
        harness.wait_until(lambda: os.path.exists(out), 15, what="the grandchild")
        with open(out) as f:
            orphan = int(f.read())
        self.addCleanup(lambda: harness.proc_alive(orphan) and os.kill(orphan, signal.SIGKILL))
        worker = d.wait_ready(1)[0]

        def pipes():
            n = 0
            for fd in os.listdir("/proc/%d/fd" % d.pid):
                try:
                    n += os.readlink("/proc/%d/fd/%s" % (d.pid, fd)).startswith("pipe:")
                except OSError:
                    pass
            return n
        before = pipes()
        os.kill(worker, signal.SIGKILL)
        harness.wait_until(lambda: "killed by signal 9" in d.log(), 15, what="the worker's death")
        # its replacement, with its own pipes
        harness.wait_until(lambda: d.log().count(": ready at ") >= 2, 15, what="a new worker")
        d.wait_workers(1)
        self.assertTrue(harness.proc_alive(orphan), "test bug: the grandchild died")
        # the dead worker's exec pipe and output pipe are closed; the new one has the same
        harness.wait_until(lambda: pipes() <= before, 10, what="the dead worker's pipe closed")
        self.stop_daemon(d)

    def test_output_without_newlines_is_read_no_faster_than_a_flood_of_lines(self):
        # Bytes past a cut line, or lines below log_level, cost no log budget: reading them
        # flat out took two thirds of a CPU.  Any output that outpaces the master pauses it.
        out = self.path("flood")
        d = self.start_daemon([self.noisy("stream", extra=[out])], min_ready=1)
        cpu0, t0 = harness.cpu_seconds(d.pid), time.monotonic()
        with open(out + ".go", "w"):
            pass
        harness.wait_until(lambda: os.path.exists(out), 30, what="the stream to end")
        cpu, wall = harness.cpu_seconds(d.pid) - cpu0, time.monotonic() - t0
        self.assertLess(cpu, wall / 5, "master CPU %.2f s in %.2f s of stream" % (cpu, wall))
        with open(out) as f:
            print("\n  stream: %d KB sent; master CPU %.2f s in %.1f s"
                  % (int(f.read()) * 100 // 1000, cpu, wall))
        r = harness.http(d.port, path="/", timeout=10)
        self.assertEqual((r.status, r.body), (200, b"noisy ok\n"))
        self.stop_daemon(d)

    def test_worker_output_flood_is_bounded_and_the_master_keeps_serving(self):
        out = self.path("flood")
        good = harness.hello(name="good", worker_count=2)
        d = self.start_daemon([good, self.noisy("flood", extra=[out])], min_ready=3)
        harness.http_ok(self, d.ports["good"])
        size0, cpu0, t0 = os.path.getsize(d.log_path), harness.cpu_seconds(d.pid), time.monotonic()
        with open(out + ".go", "w"):
            pass
        # the 4 s flood and a little after
        errors, slowest, done = harness.load_until(d.ports["good"], t0 + 5.0)
        harness.wait_until(lambda: os.path.exists(out), 30, what="the flood to end")
        cpu = harness.cpu_seconds(d.pid) - cpu0
        wall = time.monotonic() - t0
        with open(out) as f:
            sent = int(f.read())
        grown = os.path.getsize(d.log_path) - size0
        self.assertEqual(errors, [], "clients of the good service saw errors")
        self.assertGreater(done, 20, "too few requests went through")
        self.assertLess(slowest, 3.0, "a request to the good service took %.2f s" % slowest)
        # budget: 200 lines at once, 100 a second, ~150 bytes a line logged: well under 1 MB
        self.assertLess(grown, 1 << 20, "%d lines grew the log by %d bytes" % (sent, grown))
        self.assertLess(cpu, wall / 3, "master CPU %.2f s in %.2f s of flood" % (cpu, wall))
        self.assertGreater(sent, 1000, "test bug: the flood was no flood")
        pattern = r"service noisy: worker \d+: (\d+) output lines suppressed"
        harness.wait_until(lambda: re.search(pattern, d.log()), 10,
                           what="the suppressed-lines summary")
        r = harness.http(d.ports["noisy"], path="/", timeout=10)
        self.assertEqual((r.status, r.body), (200, b"noisy ok\n"))
        self.stop_daemon(d)
        log = d.log()
        told = sum(int(n) for n in re.findall(pattern, log))
        written = len(re.findall(r"service noisy: worker \d+: output: flood ", log))
        self.assertGreater(written, 0, "no line of the worker was logged")
        self.assertEqual(written + told, sent, "lines written and told do not add up")
        print("\n  flood: %d lines sent, %d logged, %d told; master CPU %.2f s in %.1f s; "
              "log +%d bytes; slowest request %.3f s over %d"
              % (sent, written, told, cpu, wall, grown, slowest, done))
