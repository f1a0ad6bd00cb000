"""The command line (flags, long forms, exit status 2 on a wrong one), what -t checks beyond
the file (log files writable, listen addresses on this host), the pid file, and the logrotate
snippet driving a running daemon."""

import os
import re
import shutil
import signal
import subprocess
import unittest

import harness

TOP = os.path.dirname(os.path.dirname(harness.HERE))


def run(*args, timeout=10):
    p = subprocess.run([harness.DAEMON] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, env=harness.daemon_env())
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


class CommandLineTest(harness.DaemonTest):

    def config(self, listen=None, extra=""):
        self.port = harness.free_port()
        path = self.write_file("t.conf", (
            'runtime_dir = "%s"\n%s'
            'service "web" {\n'
            '    listen = { "%s" }\n'
            '    command = "socketnaut-hello --socket {socket}"\n'
            '}\n') % (self.path("run"), extra, listen or "127.0.0.1:%d" % self.port))
        return path

    def test_help_prints_every_flag_with_its_long_form_and_exits_0(self):
        for flag in ("-h", "--help"):
            rc, out, err = run(flag)
            self.assertEqual(rc, 0, err)
            for short, long in (("-c", "--config"), ("-d", "--debug"), ("-t", "--test"),
                                ("-V", "--version"), ("-h", "--help")):
                self.assertTrue(re.search(r"^\s+%s, %s\b" % (short, long), out, re.M),
                                "%s %s not in the help:\n%s" % (short, long, out))

    def test_version_long_form_prints_the_version(self):
        for flag in ("-V", "--version"):
            rc, out, err = run(flag)
            self.assertEqual(rc, 0, err)
            self.assertRegex(out, r"^socketnautd \d+\.\d+")

    def test_unknown_flag_or_extra_argument_prints_usage_and_exits_2(self):
        for args in (["-x"], ["--bogus"], ["extra"], ["-c"]):
            rc, out, err = run(*args)
            self.assertEqual(rc, 2, "%s: %s" % (args, err))
            self.assertIn("usage: socketnautd", err)
            self.assertEqual(out, "")

    def test_test_long_form_checks_the_config(self):
        rc, out, err = run("--test", "--config", self.config())
        self.assertEqual(rc, 0, err)
        self.assertIn("configuration OK", out)

    def test_check_fails_on_a_listen_address_this_host_does_not_have(self):
        path = self.config(listen="192.0.2.1:8080")
        rc, out, err = harness.run_check(path)
        self.assertEqual(rc, 1, err)
        self.assertRegex(err, r"t\.conf:3: listen: cannot bind 192\.0\.2\.1.*(not available|assign)")

    def test_check_passes_while_the_running_daemon_holds_the_port(self):
        d = self.start_daemon([harness.hello(name="web", worker_count=1)])
        rc, out, err = harness.run_check(d.config_path)
        self.assertEqual(rc, 0, "-t of the running daemon's own config:\n" + err)
        self.stop_daemon(d)

    def test_check_fails_on_a_log_file_that_cannot_be_written(self):
        for target, why in ((self.path("no", "such", "dir", "x.log"), "No such file"),
                            (self.tmp, "Is a directory")):
            path = self.config(extra='log_target = "%s"\n' % target)
            rc, out, err = harness.run_check(path)
            self.assertEqual(rc, 1, err)
            self.assertRegex(err, r"t\.conf:2: log_target: cannot (create|write) .*%s" % why)

    def test_check_refuses_a_relative_pid_file(self):
        rc, out, err = harness.run_check(self.config(extra='pid_file = "x.pid"\n'))
        self.assertEqual(rc, 1, err)
        self.assertIn("t.conf:2: pid_file must be an absolute path", err)


class PidFileTest(harness.DaemonTest):

    def test_pid_file_holds_the_pid_refuses_a_second_daemon_and_goes_at_exit(self):
        pidfile = self.path("sn.pid")
        d = self.start_daemon([harness.hello(name="web", worker_count=1)],
                              global_opts={"pid_file": pidfile})
        with open(pidfile) as f:
            self.assertEqual(f.read(), "%d\n" % d.pid)
        # a second daemon (its own port) on the same pid file refuses to start
        d2 = self.start_daemon([harness.hello(name="web", worker_count=1)],
                               global_opts={"pid_file": pidfile}, name="second", wait=False)
        self.assertEqual(d2.proc.wait(10), 1)
        self.assertIn("pid_file %s is held by a running socketnautd (pid %d)" % (pidfile, d.pid),
                      d2.log())
        self.assertFalse(harness.port_open(d2.port), "the refused daemon bound its port")
        with open(pidfile) as f:
            self.assertEqual(f.read(), "%d\n" % d.pid, "the refused daemon touched the file")
        self.stop_daemon(d)
        self.assertFalse(os.path.exists(pidfile), "the pid file outlived the daemon")

    def test_pid_file_that_is_a_hard_link_to_another_file_is_refused(self):
        victim = self.write_file("victim", "precious\n")
        pidfile = self.path("sn.pid")
        os.link(victim, pidfile)
        d = self.start_daemon([harness.hello(name="web", worker_count=1)],
                              global_opts={"pid_file": pidfile}, wait=False)
        self.assertEqual(d.proc.wait(10), 1)
        self.assertIn("not a regular file of ours with one link", d.log())
        with open(victim) as f:
            self.assertEqual(f.read(), "precious\n")

    def test_pid_file_replaced_by_another_is_not_removed_at_exit(self):
        pidfile = self.path("sn.pid")
        d = self.start_daemon([harness.hello(name="web", worker_count=1)],
                              global_opts={"pid_file": pidfile})
        os.unlink(pidfile)
        with open(pidfile, "w") as f:
            f.write("12345\n")
        self.stop_daemon(d)
        with open(pidfile) as f:
            self.assertEqual(f.read(), "12345\n", "the daemon removed a pid file not its own")


@unittest.skipUnless(shutil.which("logrotate"), "logrotate not installed")
class LogrotateTest(harness.DaemonTest):

    def test_logrotate_snippet_rotates_the_log_and_the_daemon_reopens_it(self):
        logdir = self.path("log")
        os.makedirs(logdir)
        log = os.path.join(logdir, "socketnautd.log")
        pidfile = self.path("sn.pid")
        with open(os.path.join(TOP, "etc", "logrotate.d", "socketnautd")) as f:
            snippet = f.read()
        self.assertIn("/var/log/socketnautd/*.log", snippet)
        self.assertIn("/run/socketnautd.pid", snippet)
        snippet = snippet.replace("/var/log/socketnautd", logdir) \
                         .replace("/run/socketnautd.pid", pidfile)
        conf = self.write_file("logrotate.conf", snippet)
        # without -d, which keeps the log on stderr
        d = harness.Daemon(self.tmp, [harness.hello(name="web", worker_count=1)],
                           {"pid_file": pidfile, "log_target": log})
        self.daemons.append(d)
        d.start(debug=False)
        d.wait_listening()
        harness.wait_until(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0,
                           10, what="the pid file")
        p = subprocess.run(["logrotate", "-f", "-s", self.path("state"), conf],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        self.assertTrue(os.path.exists(log + ".1"), "not rotated: %s" % os.listdir(logdir))
        with open(log + ".1") as f:
            self.assertIn("starting with", f.read())
        harness.wait_until(lambda: os.path.exists(log) and "log file reopened" in open(log).read(),
                           10, what="the daemon to reopen its log")
        harness.http_ok(self, d.port)
        self.stop_daemon(d)
        with open(log) as f:
            self.assertIn("stopped", f.read(), "later lines went to the rotated file")


class CheckEveryErrorTest(harness.DaemonTest):

    def test_check_an_unknown_option_or_section_no_longer_hides_the_errors_after_it(self):
        path = self.write_file("t.conf", (
            'runtime_dir = "%s"\n'
            'frobnicate = 1\n'
            'service "web" {\n'
            '    listen = { "127.0.0.1:%d" }\n'
            '    tyop = "x"\n'
            '    command = "socketnaut-hello --socket {socket}"\n'
            '    nosuch_section { a = 1 }\n'
            '    idle_timeout = 10parsecs\n'
            '    backlog = 0\n'
            '}\n'
            '"quoted_typo" = 1\n') % (self.path("run"), harness.free_port()))
        rc, out, err = harness.run_check(path)
        self.assertEqual(rc, 1, err)
        for line, words in ((2, 'unknown option "frobnicate"'), (5, 'unknown option "tyop"'),
                            (7, 'unknown option "nosuch_section"'), (8, "idle_timeout"),
                            (9, "backlog (0)"), (11, 'unknown option "quoted_typo"')):
            self.assertIn("t.conf:%d: %s" % (line, words), err)
        self.assertIn("6 errors", err)
