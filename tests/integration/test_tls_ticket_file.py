"""ticket_key_file: session ticket keys shared by a fleet of masters (nginx's
ssl_session_ticket_key, HAProxy's tls-ticket-keys): a session one master issued resumes on
another that reads the same file; rotation by rewriting the file and reloading; the file's mode,
owner and size checked at -t with file:line."""

import os
import shutil
import signal
import ssl
import unittest

import harness
from test_tls import client_context, https_get, make_certs

OPENSSL = shutil.which("openssl")


@unittest.skipUnless(OPENSSL, "openssl command not installed")
class TLSTicketFileTest(harness.DaemonTest):

    def setUp(self):
        super().setUp()
        make_certs(self, [("a", ["a.test"])])
        self.keyfile = self.path("ticket.key")

    def write_keys(self, *keys, mode=0o600):
        with open(self.keyfile, "wb") as f:
            f.write(b"".join(keys))
        os.chmod(self.keyfile, mode)

    def service(self, **kw):
        tls = {"certificate": [os.path.join(self.certs, "a.pem")],
               "key": [os.path.join(self.certs, "a.key")],
               "ticket_key_file": self.keyfile}
        tls.update(kw)
        return harness.hello(min_workers=1, tls=tls)

    def reload(self, d, generation):
        d.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: "starting worker generation %d" % generation in d.log(), 15,
                           what="reload %d" % generation)

    def test_a_session_from_one_master_resumes_on_another_sharing_the_file(self):
        self.write_keys(os.urandom(80))
        one = self.start_daemon([self.service()])
        other = harness.Daemon(self.tmp, [self.service()], {"runtime_dir": self.path("run2")},
                               name="other")
        self.daemons.append(other)
        other.start()
        other.wait_listening()
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = client_context(self.ca)
            ctx.maximum_version = version
            _, _, first = https_get(one.port, ctx, "a.test")
            _, _, there = https_get(other.port, ctx, "a.test", session=first["session"])
            self.assertTrue(there["reused"], version)
        # A master with keys of its own does not open them.
        alone = harness.Daemon(self.tmp, [harness.hello(min_workers=1, tls={
            "certificate": [os.path.join(self.certs, "a.pem")],
            "key": [os.path.join(self.certs, "a.key")]})],
            {"runtime_dir": self.path("run3")}, name="alone")
        self.daemons.append(alone)
        alone.start()
        alone.wait_listening()
        ctx = client_context(self.ca)
        _, _, first = https_get(one.port, ctx, "a.test")
        _, _, there = https_get(alone.port, ctx, "a.test", session=first["session"])
        self.assertFalse(there["reused"])

    def test_keys_rotate_by_rewriting_the_file_and_reloading(self):
        k1, k2 = os.urandom(80), os.urandom(80)
        self.write_keys(k1)
        d = self.start_daemon([self.service()])
        ctx = client_context(self.ca)
        _, _, s1 = https_get(d.port, ctx, "a.test")
        self.write_keys(k2, k1)  # the new key seals, the old one still opens
        self.reload(d, 1)
        _, _, r = https_get(d.port, ctx, "a.test", session=s1["session"])
        self.assertTrue(r["reused"])
        _, _, s2 = https_get(d.port, ctx, "a.test")
        self.write_keys(k2)  # the old key retired
        self.reload(d, 2)
        _, _, r = https_get(d.port, ctx, "a.test", session=s2["session"])
        self.assertTrue(r["reused"])
        _, _, r = https_get(d.port, ctx, "a.test", session=s1["session"])
        self.assertFalse(r["reused"])

    def check(self, name, **tls):
        d = harness.Daemon(self.tmp, [self.service(**tls)], name=name)
        return harness.run_check(d.config_path)

    def test_check_refuses_a_file_others_can_read_a_bad_size_or_no_tickets(self):
        cases = [
            ("mode", dict(mode=0o644), {}, r"mode 0644 lets group or others at the keys"),
            ("short", dict(size=79), {}, r"79 bytes: 80 bytes a key, 1 to 8 keys"),
            ("long", dict(size=80 * 9), {}, r"720 bytes: 80 bytes a key"),
            ("empty", dict(size=0), {}, r"0 bytes: 80 bytes a key"),
            ("notickets", dict(), {"ticket_key_rotation": harness.Raw("0")},
             r"ticket_key_file is set but ticket_key_rotation is 0"),
            ("missing", dict(missing=True), {}, r"No such file or directory"),
        ]
        for name, file, tls, why in cases:
            with self.subTest(name):
                if file.get("missing"):
                    os.unlink(self.keyfile)
                else:
                    self.write_keys(os.urandom(file.get("size", 160)),
                                    mode=file.get("mode", 0o600))
                rc, out, err = self.check(name, **tls)
                self.assertNotEqual(rc, 0)
                self.assertRegex(err, r"%s\.conf:\d+: tls: .*%s" % (name, why))
        if os.geteuid() == 0:  # a file of another user: its keys are not ours to trust
            self.write_keys(os.urandom(80))
            os.chown(self.keyfile, 65534, -1)
            rc, out, err = self.check("owner")
            self.assertNotEqual(rc, 0)
            self.assertRegex(err, r"owner\.conf:\d+: tls: .*owned by uid 65534, neither root")
            os.unlink(self.keyfile)
        self.write_keys(os.urandom(160), mode=0o400)
        rc, out, err = self.check("good")
        self.assertEqual(rc, 0, err)


if __name__ == "__main__":
    unittest.main()
