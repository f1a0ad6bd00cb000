"""`socketnautd -t`: configuration OK, or each error as FILE:LINE: message and exit 1."""

import os
import resource
import subprocess
import unittest

import harness


class ConfigCheckTest(harness.DaemonTest):

    def write_config(self, text):
        """Write the config; `{rt}` is the runtime dir and `{port}` a free port."""
        path = self.path("t.conf")
        self.port = harness.free_port()
        with open(path, "w") as f:
            f.write(text.replace("{rt}", self.path("run")).replace("{port}", str(self.port)))
        return path

    def check(self, text):
        path = self.write_config(text)
        rc, out, err = harness.run_check(path)
        return path, rc, out, err

    def assert_error_at(self, text, lines, words, option=None):
        """The check fails with exit 1, stderr has `t.conf:LINE:` for one of `lines` on a
        line that also mentions every one of `words` (a tuple: any one of its words), and
        nothing says configuration OK."""
        path, rc, out, err = self.check(text)
        written = text.splitlines()
        if option:  # guard against a miscounted line number in the test itself
            self.assertTrue(any(option in written[n - 1] for n in lines),
                            "test bug: %r not on line(s) %s" % (option, lines))
        self.assertEqual(rc, 1, "exit status of -t on a bad config; stderr:\n" + err)
        self.assertNotIn("configuration OK", out)
        found = [l for l in err.splitlines()
                 if any(("t.conf:%d:" % n) in l for n in lines)]
        self.assertTrue(found, "no 't.conf:%s:' in stderr:\n%s" % (lines, err))
        for word in words:
            alternatives = word if isinstance(word, tuple) else (word,)
            self.assertTrue(any(w in l for l in found for w in alternatives),
                            "%r not in the error line(s) %r" % (word, found))
        return err

    def test_check_good_config_prints_configuration_ok_and_exits_0(self):
        path, rc, out, err = self.check(
            'runtime_dir = "{rt}"\n'
            'service "web" {\n'
            '    listen = { "127.0.0.1:{port}" }\n'
            '    command = "socketnaut-hello --socket {socket}"\n'
            '    min_workers = 1\n'
            '    max_workers = 2\n'
            '    idle_timeout = 500ms\n'
            '}\n')
        self.assertEqual(rc, 0, "stderr:\n" + err)
        self.assertIn("configuration OK", out.splitlines())
        self.assertFalse(harness.port_open(self.port), "-t must not leave anything listening")

    def test_check_min_workers_greater_than_max_workers_names_its_line(self):
        self.assert_error_at(
            'runtime_dir = "{rt}"\n'
            'service "web" {\n'
            '    listen = { "127.0.0.1:{port}" }\n'
            '    min_workers = 5\n'
            '    max_workers = 2\n'
            '    command = "socketnaut-hello --socket {socket}"\n'
            '}\n', [4, 5], ["min_workers", "max_workers"], option="_workers")

    def test_check_pool_options_out_of_range_name_their_lines(self):
        for line, words in (('worker_concurrency = -1', ["worker_concurrency", "between"]),
                            ('spawn_concurrency = 0', ["spawn_concurrency", "between"]),
                            ('spare_workers = 9', ["spare_workers", "max_workers"]),
                            ('max_queue = 2000000', ["max_queue", "between"])):
            self.assert_error_at(
                'runtime_dir = "{rt}"\n'
                'service "web" {\n'
                '    listen = { "127.0.0.1:{port}" }\n'
                '    max_workers = 4\n'
                '    %s\n'
                '    command = "socketnaut-hello --socket {socket}"\n'
                '}\n' % line, [5], words, option=line.split()[0])

    def test_check_unknown_option_names_its_line(self):
        self.assert_error_at(
            'runtime_dir = "{rt}"\n'
            'service "web" {\n'
            '    listen = { "127.0.0.1:{port}" }\n'
            '    command = "socketnaut-hello --socket {socket}"\n'
            '    frobnicate = 3\n'
            '}\n', [5], ["frobnicate"], option="frobnicate")

    def test_check_bad_duration_names_its_line(self):
        self.assert_error_at(
            'runtime_dir = "{rt}"\n'
            'service "web" {\n'
            '    listen = { "127.0.0.1:{port}" }\n'
            '    command = "socketnaut-hello --socket {socket}"\n'
            '\n'
            '    idle_timeout = 10parsecs\n'
            '}\n', [6], [("idle_timeout", "10parsecs")], option="10parsecs")

    def test_check_bad_worker_log_rate_names_its_line(self):
        for value, words in (("100/min", ["worker_log_rate", "100/min", "LINES/s"]),
                             ("0/s burst 10", ["worker_log_rate", "between 1 and"])):
            self.assert_error_at(
                'runtime_dir = "{rt}"\n'
                'service "web" {\n'
                '    listen = { "127.0.0.1:{port}" }\n'
                '    command = "socketnaut-hello --socket {socket}"\n'
                '    worker_log_rate = "%s"\n'
                '}\n' % value, [5], words, option="worker_log_rate")

    def test_check_bad_listen_address_names_its_line(self):
        self.assert_error_at(
            'runtime_dir = "{rt}"\n'
            '\n'
            'service "web" {\n'
            '    listen = { "127.0.0.1:99999" }\n'
            '    command = "socketnaut-hello --socket {socket}"\n'
            '}\n', [4], ["127.0.0.1:99999"], option="99999")

    def test_check_line_numbers_count_comment_lines(self):
        self.assert_error_at(
            '# socketnaut.conf\n'
            '#\n'
            'runtime_dir = "{rt}"   # trailing comment\n'
            '// a C++ comment\n'
            '/* a C comment\n'
            '   on two lines */\n'
            'service "web" {\n'
            '    # the address\n'
            '    listen = { "127.0.0.1:{port}" }\n'
            '    command = "socketnaut-hello --socket {socket}"\n'
            '    frobnicate = 3\n'
            '}\n', [11], ["frobnicate"], option="frobnicate")

    def test_check_shipped_example_config_is_ok(self):
        with open(os.path.join(harness.ROOT, "etc", "socketnaut.conf")) as f:
            shipped = f.read()
        path, rc, out, err = self.check(shipped.replace("/run/socketnautd", "{rt}"))
        self.assertEqual(rc, 0, "stderr:\n" + err)
        self.assertIn("configuration OK", out.splitlines())

    def test_check_error_in_shipped_example_config_names_its_line(self):
        with open(os.path.join(harness.ROOT, "etc", "socketnaut.conf")) as f:
            shipped = f.read()
        if not shipped.endswith("\n"):
            shipped += "\n"
        text = shipped + "frobnicate = 3\n"
        self.assert_error_at(text, [len(text.splitlines())], ["frobnicate"], option="frobnicate")

    def test_check_missing_command_binary_names_its_line_and_path(self):
        self.assert_error_at(
            'runtime_dir = "{rt}"\n'
            'service "web" {\n'
            '    listen = { "127.0.0.1:{port}" }\n'
            '    min_workers = 1\n'
            '    command = "/nonexistent/x --socket {socket}"\n'
            '}\n', [5], ["/nonexistent/x"], option="/nonexistent/x")

    def test_check_unknown_user_names_its_line(self):
        self.assert_error_at(
            'runtime_dir = "{rt}"\n'
            'service "web" {\n'
            '    listen = { "127.0.0.1:{port}" }\n'
            '    command = "socketnaut-hello --socket {socket}"\n'
            '    user = "sn_no_such_user_x"\n'
            '}\n', [5], ["sn_no_such_user_x"], option="user")

    def test_check_two_services_on_one_address_names_the_second_listen_line(self):
        self.assert_error_at(
            'runtime_dir = "{rt}"\n'
            'service "a" {\n'
            '    listen = { "127.0.0.1:{port}" }\n'
            '    command = "socketnaut-hello --socket {socket}"\n'
            '}\n'
            'service "b" {\n'
            '    command = "socketnaut-hello --socket {socket}"\n'
            '    listen = { "127.0.0.1:{port}" }\n'
            '}\n', [8], ["127.0.0.1:"], option="listen")

    def test_check_config_without_service_is_an_error(self):
        path, rc, out, err = self.check('runtime_dir = "{rt}"\nkill_timeout = 2s\n')
        self.assertEqual(rc, 1, "stderr:\n" + err)
        self.assertNotIn("configuration OK", out)
        self.assertIn("t.conf", err)
        self.assertIn("service", err.lower())

    def test_check_reports_every_error_not_only_the_first(self):
        err = self.assert_error_at(
            'runtime_dir = "{rt}"\n'
            'service "web" {\n'
            '    listen = { "127.0.0.1:{port}" }\n'
            '    command = "/nonexistent/x"\n'
            '    idle_timeout = 10parsecs\n'
            '}\n', [4], ["/nonexistent/x"])
        self.assertIn("t.conf:5:", err, "the second error (line 5) is not reported")

    TWO_SERVICES = (
        'runtime_dir = "{rt}"\n'
        'service "a" {\n'
        '    listen = { "127.0.0.1:{port}" }\n'
        '    command = "socketnaut-hello --socket {socket}"\n'
        '}\n'
        '%s'
        'service "b" {\n'
        '    listen = { "127.0.0.1:1" }\n'
        '    command = "socketnaut-hello --socket {socket}"\n'
        '%s')

    def test_check_unclosed_comment_names_the_line_it_opens_on(self):
        self.assert_error_at(self.TWO_SERVICES % ("/* service b is off for now\n", "}\n"),
                             [6], ["/*", "not closed"], option="/*")

    def test_check_nul_byte_names_its_line(self):
        self.assert_error_at(self.TWO_SERVICES % ("\n  \0\n", "}\n"), [7], ["NUL"])

    def test_check_missing_final_brace_names_the_line_of_the_section(self):
        self.assert_error_at(self.TWO_SERVICES % ("", ""), [6], ["not closed", "}"],
                             option='service "b"')

    def test_check_unterminated_string_names_its_line(self):
        text = self.TWO_SERVICES % ("", "}\n")
        text = text.replace('"127.0.0.1:1"', '"127.0.0.1:1')
        self.assert_error_at(text, [7], ["string", "not closed"], option="127.0.0.1:1")

    def test_check_stray_brace_and_untitled_section_name_their_lines(self):
        self.assert_error_at(self.TWO_SERVICES % ("}\n", "}\n"), [6], ["closing brace"])
        self.assert_error_at(self.TWO_SERVICES % ("{\n", "}\n"), [6], ["{"])
        text = self.TWO_SERVICES % ("", "}\n")
        self.assert_error_at(text.replace('service "b"', "service"), [6], ["title"])

    def test_check_same_service_name_twice_names_both_lines(self):
        text = (self.TWO_SERVICES % ("", "}\n")).replace('service "b"', 'service "a"')
        self.assert_error_at(text, [6], ['"a"', "line 2"], option='service "a"')

    def test_check_directory_fifo_and_huge_file_are_refused_without_hanging(self):
        rc, out, err = harness.run_check(self.tmp)
        self.assertEqual(rc, 1, "stderr:\n" + err)
        self.assertIn("directory", err)
        fifo = self.path("fifo.conf")
        os.mkfifo(fifo)
        try:
            rc, out, err = harness.run_check(fifo, timeout=10)
        except subprocess.TimeoutExpired:
            self.fail("socketnautd -t hangs on a FIFO")
        self.assertEqual(rc, 1, "stderr:\n" + err)
        self.assertIn("not a regular file", err)
        path = self.write_config(self.TWO_SERVICES % ("", "}\n") + "#" * (17 << 20) + "\n")
        rc, out, err = harness.run_check(path, timeout=30)
        self.assertEqual(rc, 1, "stderr:\n" + err)
        self.assertIn("larger than 16 MiB", err)

    def many_services(self, n):
        """-t of n services; returns the CPU seconds it took (a hang guard of 60 s)."""
        lines = ['runtime_dir = "%s"\n' % self.path("run")]
        for i in range(n):
            lines.append('service "s%d" {\n    listen = { "127.0.0.1:%d" }\n'
                         '    command = "/bin/true {socket}"\n    max_workers = 2\n}\n'
                         % (i, 10000 + i))
        path = self.path("many-%d.conf" % n)
        with open(path, "w") as f:
            f.write("".join(lines))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            rc, out, err = harness.run_check(path, timeout=60)
        except subprocess.TimeoutExpired:
            self.fail("-t of %d services did not finish within 60 s" % n)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.assertEqual(rc, 0, "stderr:\n" + err[-2000:])
        self.assertIn("configuration OK", out)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    def test_check_of_many_services_grows_linearly(self):
        # CPU time, not wall time, and the best of two runs: other tests share the machine.
        # Linear loading takes about 2x for twice the services; quadratic about 4x.
        small = min(self.many_services(10000) for _ in range(2))
        large = min(self.many_services(20000) for _ in range(2))
        self.assertLess(large, 3 * max(small, 0.05),
                        "-t CPU time: %.2f s for 10,000 services, %.2f s for 20,000"
                        % (small, large))

    def test_startup_with_missing_worker_binary_exits_1_naming_the_path(self):
        path = self.write_config(
            'runtime_dir = "{rt}"\n'
            'service "web" {\n'
            '    listen = { "127.0.0.1:{port}" }\n'
            '    command = "/nonexistent/x --socket {socket}"\n'
            '}\n')
        try:
            p = subprocess.run([harness.DAEMON, "-c", path], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=10, env=harness.daemon_env(),
                               cwd=self.tmp, start_new_session=True)
        except subprocess.TimeoutExpired:
            self.fail("socketnautd kept running with a missing worker binary")
        err = p.stderr.decode(errors="replace")
        self.assertEqual(p.returncode, 1, "stderr:\n" + err)
        self.assertIn("/nonexistent/x", err)
        self.assertFalse(harness.port_open(self.port))


if __name__ == "__main__":
    unittest.main()
