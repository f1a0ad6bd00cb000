"""include "conf.d/*.conf": globs sorted, relative to the including file, errors naming the
included file and its own line, loops and depth bounded, and the same on reload."""

import os
import signal
import subprocess

import harness


def check(path, cwd="/"):
    p = subprocess.run([harness.DAEMON, "-t", "-c", path], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=20, env=harness.daemon_env(), cwd=cwd)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def service(name, port, extra=""):
    return ('service "%s" {\n'
            '    listen = { "127.0.0.1:%d" }\n'
            '    command = "socketnaut-hello --socket {socket}"\n'
            '    worker_count = 1\n%s'
            '}\n') % (name, port, extra)


class IncludeTest(harness.DaemonTest):

    def main(self, body, name="etc/main.conf"):
        return self.write_file(name, 'runtime_dir = "%s"\n%s' % (self.path("run"), body))

    def test_include_glob_loads_every_match_relative_to_the_including_file(self):
        pa, pb = harness.free_port(), harness.free_port()
        self.write_file("etc/conf.d/a.conf", service("a", pa))
        self.write_file("etc/conf.d/b.conf", service("b", pb))
        self.write_file("etc/conf.d/README", "not a config: not matched\n")
        path = self.main('include "conf.d/*.conf"\n')
        rc, out, err = check(path, cwd=self.tmp)  # another directory than etc/
        self.assertEqual(rc, 0, err)
        self.assertIn("configuration OK", out)
        d = harness.Daemon(self.tmp, [])
        d.config_path = path
        self.daemons.append(d)
        d.start()
        d.wait_listening(pa)
        d.wait_listening(pb)
        harness.http_ok(self, pa)
        harness.http_ok(self, pb)
        self.stop_daemon(d)

    def test_include_errors_name_the_included_file_and_its_line_and_the_rest_still_reported(self):
        inc = self.write_file("etc/conf.d/bad.conf",
                              "# a comment\n" + service("a", harness.free_port(),
                                                        "    idle_timeout = 10parsecs\n"))
        path = self.main('include "conf.d/*.conf"\n'
                         'frobnicate = 1\n'
                         + service("b", harness.free_port(), "    backlog = 0\n"))
        rc, out, err = check(path)
        self.assertEqual(rc, 1, err)
        self.assertIn("%s:6: idle_timeout" % inc, err)  # line 6 of the included file
        self.assertIn('%s:3: unknown option "frobnicate"' % path, err)
        self.assertIn("%s:8: backlog (0) must be between" % path, err,
                      "an error after the include and the unknown option is hidden")

    def test_include_matches_are_sorted_and_a_duplicate_names_the_first_file(self):
        first = self.write_file("etc/conf.d/10-x.conf", service("x", harness.free_port()))
        second = self.write_file("etc/conf.d/2-x.conf", service("x", harness.free_port()))
        rc, out, err = check(self.main('include "conf.d/*.conf"\n'))
        self.assertEqual(rc, 1, err)
        self.assertIn('%s:1: service "x" is already defined at %s:1' % (second, first), err)

    def test_include_pattern_without_match_is_fine_a_missing_plain_file_is_an_error(self):
        body = service("a", harness.free_port())
        rc, out, err = check(self.main('include "conf.d/*.conf"\n' + body))
        self.assertEqual(rc, 0, "an empty conf.d: " + err)
        path = self.main('include "missing.conf"\n' + body)
        rc, out, err = check(path)
        self.assertEqual(rc, 1, err)
        self.assertIn('%s:2: include "missing.conf": ' % path, err)
        self.assertIn("no such file", err)

    def test_include_loop_and_depth_are_bounded(self):
        path = self.main('include "main.conf"\n' + service("a", harness.free_port()))
        rc, out, err = check(path)
        self.assertEqual(rc, 1, err)
        self.assertIn("%s:2: include \"main.conf\": %s includes itself" % (path, path), err)
        # a chain of 12 distinct files: refused past 8, with the line of the deepest include
        for i in range(12):
            self.write_file("etc/chain%d.conf" % i, 'include "chain%d.conf"\n' % (i + 1))
        self.write_file("etc/chain12.conf", "")
        path = self.main('include "chain0.conf"\n' + service("a", harness.free_port()))
        rc, out, err = check(path)
        self.assertEqual(rc, 1, err)
        self.assertIn("%s:1: include \"chain8.conf\": includes nested more than 8 deep"
                      % self.path("etc", "chain7.conf"), err)

    def test_include_inside_a_section_is_refused(self):
        path = self.main(service("a", harness.free_port(), '    include "x.conf"\n'))
        rc, out, err = check(path)
        self.assertEqual(rc, 1, err)
        self.assertIn("%s:6: include is only allowed at the top level" % path, err)

    def test_include_is_read_again_on_reload_and_a_bad_included_file_keeps_the_running_config(self):
        pa, pb = harness.free_port(), harness.free_port()
        self.write_file("etc/conf.d/a.conf", service("a", pa))
        path = self.main('include "conf.d/*.conf"\n')
        d = harness.Daemon(self.tmp, [])
        d.config_path = path
        self.daemons.append(d)
        d.start()
        d.wait_listening(pa)
        self.write_file("etc/conf.d/b.conf", service("b", pb))
        os.kill(d.pid, signal.SIGHUP)
        d.wait_listening(pb, timeout=15)
        harness.http_ok(self, pb)
        bad = self.write_file("etc/conf.d/c.conf", "backlog = 3\n")
        os.kill(d.pid, signal.SIGHUP)
        harness.wait_until(lambda: "reload failed" in d.log(), 15, what="the failed reload")
        self.assertIn('%s:1: unknown option "backlog"' % bad, d.log())
        harness.http_ok(self, pa)
        harness.http_ok(self, pb)
        self.stop_daemon(d)
