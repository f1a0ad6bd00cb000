"""TLS protocol versions a service offers: max_protocol caps them (min_protocol is tested with
the rest of TLS in test_tls.py).  Real clients: Python ssl, openssl s_client, curl."""

import json
import os
import shutil
import ssl
import subprocess
import unittest

import harness
from test_tls import AGENT_DIR, WORKER, client_context, https_get, make_certs

OPENSSL = shutil.which("openssl")
CURL = shutil.which("curl")


@unittest.skipUnless(OPENSSL, "openssl command not installed")
class TLSVersionsTest(harness.DaemonTest):

    def setUp(self):
        super().setUp()
        make_certs(self, [("a", ["a.test"])])

    def tls(self, **kw):
        section = {"certificate": [os.path.join(self.certs, "a.pem")],
                   "key": [os.path.join(self.certs, "a.key")]}
        section.update(kw)
        return section

    def test_max_protocol_tls12_refuses_tls13_only_clients_and_tells_the_worker(self):
        worker = self.write_file("worker.py", WORKER)
        d = self.start_daemon([{"name": "web", "command": "python3 %s %s" % (worker, AGENT_DIR),
                                "backend": "agent", "min_workers": 1,
                                "tls": self.tls(max_protocol=harness.Raw("TLSv1.2"))}])
        d.wait_ready(1)
        # A default client offers 1.3 and 1.2: it gets 1.2, and the worker hears so.
        status, body, facts = https_get(d.port, client_context(self.ca), "a.test")
        self.assertEqual(status, 200)
        self.assertEqual(facts["version"], "TLSv1.2")
        self.assertEqual(json.loads(body)["tls"]["version"], "TLSv1.2")
        # A client limited to 1.3 is refused.
        only13 = client_context(self.ca)
        only13.minimum_version = ssl.TLSVersion.TLSv1_3
        with self.assertRaises(ssl.SSLError):
            https_get(d.port, only13, "a.test")
        p = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % d.port,
                            "-servername", "a.test", "-CAfile", self.ca, "-tls1_3"],
                           input=b"", capture_output=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertNotIn("Protocol  : TLSv1.3", p.stdout.decode(errors="replace"))
        p = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % d.port,
                            "-servername", "a.test", "-CAfile", self.ca],
                           input=b"", capture_output=True, timeout=30)
        self.assertRegex(p.stdout.decode(errors="replace"), r"Protocol *: TLSv1\.2")
        if CURL:
            p = subprocess.run([CURL, "-sS", "--cacert", self.ca, "--resolve",
                                "a.test:%d:127.0.0.1" % d.port, "https://a.test:%d/" % d.port],
                               capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(json.loads(p.stdout)["tls"]["version"], "TLSv1.2")
            p = subprocess.run([CURL, "-sS", "--tlsv1.3", "--cacert", self.ca, "--resolve",
                                "a.test:%d:127.0.0.1" % d.port, "https://a.test:%d/" % d.port],
                               capture_output=True, timeout=30)
            self.assertNotEqual(p.returncode, 0)
        self.assertTrue(d.alive())

    def test_max_protocol_defaults_to_the_newest(self):
        d = self.start_daemon([harness.hello(tls=self.tls(), min_workers=1)])
        _, _, facts = https_get(d.port, client_context(self.ca), "a.test")
        self.assertEqual(facts["version"], "TLSv1.3")

    def check(self, **tls):
        d = harness.Daemon(self.tmp, [harness.hello(tls=self.tls(**tls))])
        return harness.run_check(d.config_path)

    def test_check_refuses_max_protocol_older_than_min_protocol(self):
        rc, out, err = self.check(min_protocol=harness.Raw("TLSv1.3"),
                                  max_protocol=harness.Raw("TLSv1.2"))
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, r"socketnaut\.conf:\d+: tls: max_protocol is older than "
                              r"min_protocol")
        rc, out, err = self.check(max_protocol=harness.Raw("TLSv1.1"))
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, r"socketnaut\.conf:\d+: .*TLSv1\.2 or TLSv1\.3")
        rc, out, err = self.check(min_protocol=harness.Raw("TLSv1.3"),
                                  max_protocol=harness.Raw("TLSv1.3"))
        self.assertEqual(rc, 0, err)


if __name__ == "__main__":
    unittest.main()
