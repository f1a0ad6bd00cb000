"""Session ticket keys across a binary upgrade (SIGUSR2): the old master passes its keys to the
new one in a sealed memfd, so a client resumes on the new master the session it got from the old
one; the new master refuses a truncated or hostile blob (and makes new keys)."""

import fcntl
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
import unittest

import harness
from test_tls import client_context, https_get, make_certs
import test_upgrade  # the module, not its class: the loader would run its tests twice

OPENSSL = shutil.which("openssl")
ROTATION = 8  # s: ticket_key_rotation; a ticket resumes for at most twice that


def blob(services, version=1, count=None):
    """A key blob as the old master writes it: [(name, [(valid, born_ms, 80 key bytes)] * 2)]."""
    out = b"SNTK" + bytes([version, 0, 0, 0]) + struct.pack(
        "!I", len(services) if count is None else count)
    for name, keys in services:
        out += bytes([len(name)]) + name
        for valid, born, key in keys:
            out += bytes([valid]) + struct.pack("!Q", born) + key
    return out


def memfd(data, seal=True):
    fd = os.memfd_create("test-keys", os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    if seal:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW |
                    fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
    return fd


@unittest.skipUnless(OPENSSL, "openssl command not installed")
class TLSUpgradeTest(harness.DaemonTest):
    new_masters = test_upgrade.UpgradeTest.new_masters
    wait_new_master = test_upgrade.UpgradeTest.wait_new_master
    kill_master = test_upgrade.UpgradeTest.kill_master
    stop_master = test_upgrade.UpgradeTest.stop_master
    workers_of = test_upgrade.UpgradeTest.workers_of
    sockets = test_upgrade.UpgradeTest.sockets

    def setUp(self):
        super().setUp()
        make_certs(self, [("a", ["a.test"])])

    def service(self, **kw):
        return harness.hello(min_workers=1, tls={
            "certificate": [os.path.join(self.certs, "a.pem")],
            "key": [os.path.join(self.certs, "a.key")],
            "ticket_key_rotation": harness.Raw("%ds" % ROTATION)}, **kw)

    def s_client(self, port, *args):
        p = subprocess.run([OPENSSL, "s_client", "-connect", "127.0.0.1:%d" % port,
                            "-servername", "a.test", "-CAfile", self.ca, "-ign_eof"] +
                           list(args), input=b"GET / HTTP/1.0\r\n\r\n", capture_output=True,
                           timeout=30)
        return p.stdout.decode(errors="replace")

    def test_sessions_from_the_old_master_resume_on_the_new_one_and_keys_rotate_after(self):
        d = self.start_daemon([self.service()])
        d.wait_ready(1)
        firsts = {}
        for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = client_context(self.ca)
            ctx.maximum_version = version
            _, _, first = https_get(d.port, ctx, "a.test")
            self.assertFalse(first["reused"])
            firsts[version] = (ctx, first["session"])
        born = time.monotonic()  # the old master's keys are no younger than this
        sess = self.path("sess.pem")
        self.assertIn("Hello", self.s_client(d.port, "-sess_out", sess))
        d.proc.send_signal(signal.SIGUSR2)
        new = self.wait_new_master(d)
        self.assertEqual(d.proc.wait(20), 0)  # the old master is gone: only `new` serves
        self.assertIn("binary upgrade: ticket keys of 1 service inherited", d.log())
        self.assertLess(time.monotonic() - born, 2 * ROTATION - 1, "upgrade too slow to test")
        for version, (ctx, session) in firsts.items():
            _, _, again = https_get(d.port, ctx, "a.test", session=session)
            self.assertTrue(again["reused"], version)
        self.assertRegex(self.s_client(d.port, "-sess_in", sess), r"Reused, TLSv1\.3")
        # The new master rotates the inherited keys on their schedule: a client that keeps
        # coming back resumes each time (a fresh ticket each time), while a ticket of the old
        # master's key stops resuming once that key is two rotations old.
        ctx, latest = firsts[ssl.TLSVersion.TLSv1_3]
        _, _, r = https_get(d.port, ctx, "a.test", session=latest)
        latest = r["session"]
        deadline = born + 2 * ROTATION + 2
        for i in range(4 * ROTATION):  # bounded: at most 4 x ROTATION s
            if time.monotonic() > deadline:
                break
            time.sleep(1)
            _, _, r = https_get(d.port, ctx, "a.test", session=latest)
            self.assertTrue(r["reused"], "round %d" % i)
            latest = r["session"]
        self.assertGreater(time.monotonic(), deadline)
        _, _, old = https_get(d.port, ctx, "a.test", session=firsts[ssl.TLSVersion.TLSv1_3][1])
        self.assertFalse(old["reused"], "a key two rotations old still decrypts")
        self.stop_master(new, self.workers_of(new), d.runtime_dir)

    def start_with_keys(self, fd, name):
        """Start the daemon as an old master would start a new one, with `fd` as the ticket
        key memfd; play the old master's part of the handshake."""
        d = harness.Daemon(self.tmp, [self.service()], name=name)
        self.daemons.append(d)
        ours, theirs = socket.socketpair()
        env = harness.daemon_env({"SOCKETNAUT_UPGRADE_FD": str(theirs.fileno()),
                                  "SOCKETNAUT_TLS_KEYS_FD": str(fd)})
        with open(d.log_path, "ab") as log:
            d.proc = subprocess.Popen([harness.DAEMON, "-c", d.config_path], env=env,
                                      stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      cwd=self.tmp, start_new_session=True,
                                      pass_fds=(theirs.fileno(), fd))
        d.pid = d.proc.pid
        harness._live_groups.add(d.pid)
        theirs.close()
        os.close(fd)
        ours.settimeout(30)
        self.assertEqual(ours.recv(1), b"R")  # ready
        ours.sendall(b"A")
        ours.close()
        return d

    def test_a_truncated_or_hostile_key_blob_is_refused_and_new_keys_made(self):
        key = os.urandom(80)
        now = int(time.monotonic() * 1000)
        good = [(b"web", [(1, now, key), (0, 0, bytes(80))])]
        cases = [
            ("truncated", memfd(blob(good)[:-7]), r"service 0 truncated"),
            ("not sealed", memfd(blob(good), seal=False), r"not a sealed memfd"),
            ("born in the future", memfd(blob([(b"web", [(1, now + 10 ** 9, key),
                                                         (0, 0, bytes(80))])])),
             r"service web: an impossible key"),
            ("valid flag 7", memfd(blob([(b"web", [(7, now, key), (0, 0, bytes(80))])])),
             r"an impossible key"),
            ("too many services", memfd(blob(good, count=0xffffffff)), r"4294967295 services"),
            ("trailing bytes", memfd(blob(good) + b"x"), r"1 bytes after the last service"),
            ("a name with a newline", memfd(blob([(b"w\neb", good[0][1])])), r"byte 0xa"),
            ("version 2", memfd(blob(good, version=2)), r"version 2, not 1"),
            ("not a blob", memfd(b"GET / HTTP/1.0\r\n\r\n"), r"not a ticket key blob"),
        ]
        for i, (what, fd, why) in enumerate(cases):
            with self.subTest(what):
                d = self.start_with_keys(fd, "case%d" % i)
                log = d.log()
                self.assertRegex(log, r"ticket keys from the old master refused \([^)]*%s" % why)
                self.assertNotIn("inherited", log)
                # It serves, with keys of its own: sessions resume.
                ctx = client_context(self.ca)
                status, _, first = https_get(d.port, ctx, "a.test")
                self.assertEqual(status, 200)
                _, _, again = https_get(d.port, ctx, "a.test", session=first["session"])
                self.assertTrue(again["reused"])
                self.stop_daemon(d)
        # The same layout, whole and sealed, is taken.
        d = self.start_with_keys(memfd(blob(good + [(b"gone", good[0][1])])), "whole")
        harness.wait_until(lambda: "ticket keys of 1 service no longer configured dropped"
                           in d.log(), 10, what="the unknown service's keys dropped")
        self.assertIn("binary upgrade: ticket keys of 2 services inherited", d.log())
        self.assertEqual(https_get(d.port, client_context(self.ca), "a.test")[0], 200)


if __name__ == "__main__":
    unittest.main()
