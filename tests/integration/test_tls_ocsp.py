"""OCSP stapling freshness: at load and at `-t` the configured response is parsed; one for
another certificate or an unsuccessful one is refused with file:line, a stale one or one within
a day of its nextUpdate is warned of; while running, a response is no longer stapled once past
its nextUpdate (logged once).  Responses are made with `openssl ocsp` from an index file and a
responder certificate, as in test_tls.py; checked with `openssl s_client -status`."""

import os
import re
import shutil
import signal
import subprocess
import time
import unittest

import harness
from test_tls import make_certs, sh

OPENSSL = shutil.which("openssl")
FAKETIME = shutil.which("faketime")
# A DER OCSPResponse with responseStatus unauthorized (6) and no body.
UNAUTHORIZED = bytes.fromhex("3003 0a01 06")


@unittest.skipUnless(OPENSSL, "openssl command not installed")
class TLSOCSPTest(harness.DaemonTest):

    def setUp(self):
        super().setUp()
        make_certs(self, [("a", ["a.test"]), ("b", ["b.test"])])

    def respond(self, name, *validity, clock=()):
        """name.ocsp: a "good" response for name.pem signed by the CA, valid for `validity`
        (openssl ocsp's -ndays N or -nmin N); returns its path."""
        d = self.certs
        index = os.path.join(d, "index.txt")
        with open(index, "w") as f:
            for leaf in ("a", "b"):
                serial = subprocess.run(
                    [OPENSSL, "x509", "-in", leaf + ".pem", "-noout", "-serial"], cwd=d,
                    capture_output=True, text=True, check=True).stdout.strip().split("=")[1]
                expiry = time.strftime("%y%m%d%H%M%SZ", time.gmtime(time.time() + 5 * 86400))
                f.write("V\t%s\t\t%s\tunknown\t/CN=%s\n" % (expiry, serial, leaf))
        sh(d, *clock, OPENSSL, "ocsp", "-index", "index.txt", "-rsigner", "ca.pem", "-rkey", "ca.key",
           "-CA", "ca.pem", "-issuer", "ca.pem", "-cert", name + ".pem",
           "-respout", name + ".ocsp", *validity)
        return os.path.join(d, name + ".ocsp")

    def tls(self, ocsp):
        return {"certificate": [os.path.join(self.certs, n + ".pem") for n in ("a", "b")],
                "key": [os.path.join(self.certs, n + ".key") for n in ("a", "b")],
                "ocsp_response": [ocsp]}

    def check(self, ocsp, name="check"):
        d = harness.Daemon(self.tmp, [harness.hello(tls=self.tls(ocsp))], name=name)
        return harness.run_check(d.config_path)

    def stapled(self, port):
        p = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port,
                            "-servername", "a.test", "-status", "-CAfile", self.ca],
                           input=b"", capture_output=True, timeout=30)
        out = p.stdout.decode(errors="replace")
        self.assertIn("Verify return code: 0 (ok)", out)
        if "OCSP response: no response sent" in out:
            return False
        self.assertIn("OCSP Response Status: successful", out)
        self.assertIn("Cert Status: good", out)
        return True

    def test_a_fresh_response_is_checked_clean_and_stapled(self):
        fresh = self.respond("a", "-ndays", "3")
        rc, out, err = self.check(fresh)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("ocsp_response", err)
        # With the issuer in the chain file, its key is compared too.
        chain = self.path("a-chain.pem")
        with open(chain, "w") as f:
            for name in ("a.pem", "ca.pem"):
                with open(os.path.join(self.certs, name)) as part:
                    f.write(part.read())
        for ocsp, ok in ((fresh, True), (self.respond("b", "-ndays", "3"), False)):
            tls = self.tls(ocsp)
            tls["certificate"][0] = chain
            d = harness.Daemon(self.tmp, [harness.hello(tls=tls)], name="chain")
            rc, out, err = harness.run_check(d.config_path)
            self.assertEqual(rc == 0, ok, err)
            self.assertEqual("is not for certificate" in err, not ok, err)
        d = self.start_daemon([harness.hello(tls=self.tls(fresh), min_workers=1)])
        self.assertTrue(self.stapled(d.port))
        self.assertNotIn("ocsp_response", d.log())

    def test_check_refuses_a_response_for_another_certificate_or_unsuccessful_with_file_line(self):
        other = self.respond("b", "-ndays", "3")  # good, but about b.pem
        rc, out, err = self.check(other, "other")
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, r"other\.conf:\d+: tls: ocsp_response .*b\.ocsp is not for "
                              r"certificate .*a\.pem")
        with open(self.path("unauthorized.ocsp"), "wb") as f:
            f.write(UNAUTHORIZED)
        rc, out, err = self.check(self.path("unauthorized.ocsp"), "unauth")
        self.assertNotEqual(rc, 0)
        self.assertRegex(err, r"unauth\.conf:\d+: tls: ocsp_response .*unauthorized\.ocsp: not a "
                              r"successful DER OCSP response \(unauthorized\)")
        # The line is the ocsp_response option's.
        line = int(re.search(r"unauth\.conf:(\d+):", err).group(1))
        with open(self.path("unauth.conf")) as f:
            self.assertIn("ocsp_response", f.read().splitlines()[line - 1])
        # A reload with such a file is refused too: the running master keeps its responses.
        fresh = self.respond("a", "-ndays", "3")
        d = self.start_daemon([harness.hello(tls=self.tls(fresh), min_workers=1)])
        shutil.copy(other, fresh)
        d.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: "reload failed: the running configuration stays" in d.log(),
                           15, what="the reload refused")
        self.assertRegex(d.log(), r"socketnaut\.conf:\d+: tls: ocsp_response .*a\.ocsp is not for")
        self.assertTrue(self.stapled(d.port))  # what it loaded before

    def test_a_response_past_its_next_update_is_warned_at_check_and_no_longer_stapled(self):
        # openssl ocsp makes responses valid from now, for a minute at least: made 56 s in
        # the past (libfaketime) one goes stale in 4 s; without faketime the test waits 60 s.
        made = time.time()
        if FAKETIME:
            made -= 56
            soon = self.respond("a", "-nmin", "1", clock=(FAKETIME, "-f", "-56s"))
        else:
            soon = self.respond("a", "-nmin", "1")
        rc, out, err = self.check(soon, "soon")
        self.assertEqual(rc, 0, err)
        self.assertRegex(err, r"warning: .*soon\.conf:\d+: tls: ocsp_response .*a\.ocsp "
                              r"reaches its nextUpdate within a day")
        d = self.start_daemon([harness.hello(tls=self.tls(soon), min_workers=1)])
        self.assertTrue(self.stapled(d.port))
        time.sleep(max(0, made + 62 - time.time()))
        self.assertFalse(self.stapled(d.port))
        self.assertFalse(self.stapled(d.port))
        self.assertEqual(d.log().count("is past its nextUpdate: no longer stapled"), 1)
        rc, out, err = self.check(soon, "stale")
        self.assertEqual(rc, 0, err)
        self.assertRegex(err, r"warning: .*stale\.conf:\d+: tls: ocsp_response .*a\.ocsp is "
                              r"past its nextUpdate \(.*\): it is not stapled")
        # A reload re-reads the file: a fresh response is stapled again.
        self.respond("a", "-ndays", "3")
        d.proc.send_signal(signal.SIGHUP)
        harness.wait_until(lambda: "starting worker generation 1" in d.log(), 15, what="reload")
        self.assertTrue(self.stapled(d.port))


if __name__ == "__main__":
    unittest.main()
