"""The admin socket and socketnautctl: the status snapshot checked against the real processes,
the connection table, reload that waits for its outcome, scale, restart, drain, stop, who may
connect, and clients that misbehave."""

import json
import os
import socket
import stat
import struct
import subprocess
import threading
import time

import harness

HDR = struct.Struct(">BBHI")  # version, type, flags, length (src/admin.h)
REQUEST, OUT, ERR, DONE = 1, 2, 3, 4


def vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def admin_connect(d, timeout=10):
    """A raw connection to the admin socket; waits (bounded) while its backlog is full."""
    deadline = time.monotonic() + timeout
    for _ in range(10000):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(d.admin_socket)
            return s
        except BlockingIOError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    raise AssertionError("admin socket backlog never freed")


# An admin_group member's clients: 64 of them (all the daemon serves), each asking for its
# status until its answers fill the socket, never reading; then says so in argv[2].
HOG = r'''
import socket, struct, sys, time
hdr = struct.Struct(">BBHI")
payload = b"status"
req = hdr.pack(1, 1, 1, len(payload)) + payload
socks, unread = [], 0
for _ in range(64):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.setblocking(False)
    socks.append(s)
for s in socks:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            s.send(req * 64)
        except BlockingIOError:
            unread += 1
            break
        except OSError:
            break
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write("%d unread" % unread)
import os
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
time.sleep(60)
'''


def request(words, flags=0):
    payload = "\n".join(words).encode()
    return HDR.pack(1, REQUEST, flags, len(payload)) + payload


def read_answer(s, limit=64 << 20):
    """Frames until DONE: (stdout bytes, stderr bytes, exit status)."""
    buf, out, err = b"", b"", b""
    for _ in range(100000):
        while len(buf) >= HDR.size:
            version, kind, _, length = HDR.unpack_from(buf)
            assert version == 1 and kind in (OUT, ERR, DONE), (version, kind)
            if len(buf) < HDR.size + length:
                break
            body, buf = buf[HDR.size:HDR.size + length], buf[HDR.size + length:]
            if kind == DONE:
                return out, err, body[0]
            if kind == OUT:
                out += body
            else:
                err += body
            assert len(out) < limit
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("closed before DONE")
        buf += chunk
    raise AssertionError("no DONE frame")


def closed_by_peer(s, timeout=10):
    """True when the daemon closes s (EOF or reset) within timeout."""
    s.settimeout(timeout)
    try:
        for _ in range(1000):
            if not s.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return False


class AdminTest(harness.DaemonTest):

    def wait_service(self, d, what, predicate, timeout=15, name=None):
        seen = {}

        def check():
            seen["svc"] = d.service(name)
            return predicate(seen["svc"])

        try:
            harness.wait_until(check, timeout, interval=0.1, what=what)
            return seen["svc"]
        except AssertionError as e:
            raise AssertionError("%s; last status: %s" % (e, seen.get("svc"))) from None

    def test_status_json_fields_match_the_real_processes(self):
        d = self.start_daemon([harness.hello(min_workers=2, max_workers=3)])
        pids = d.wait_ready(2)
        harness.http_ok(self, d.port)
        before = time.time()
        st = d.status()
        self.assertEqual(st["version"], 1)
        self.assertEqual(st["pid"], d.pid)
        self.assertLessEqual(abs(st["time"] - before), 5)
        self.assertGreater(st["uptime_s"], 0)
        self.assertEqual(st["reloads"], {"ok": 0, "failed": 0, "last_result": "none",
                                         "last_age_s": None})
        self.assertEqual(len(st["services"]), 1)
        svc = st["services"][0]
        self.assertEqual(svc["name"], "web")
        self.assertEqual(svc["listen"], ["127.0.0.1:%d" % d.port])
        self.assertEqual(svc["backend"], "unix")
        self.assertEqual(svc["state"], "running")
        self.assertEqual(svc["generation"], 0)
        self.assertEqual((svc["min_workers"], svc["max_workers"]), (2, 3))
        self.assertEqual((svc["workers_online"], svc["workers_ready"]), (2, 2))
        self.assertEqual((svc["connections"], svc["queued"], svc["max_queue"]), (0, 0, 0))
        self.assertEqual(svc["backoff_ms"], 0)
        workers = svc["workers"]
        self.assertEqual(sorted(w["pid"] for w in workers), sorted(pids))
        self.assertEqual(sorted(w["slot"] for w in workers), [0, 1])
        self.assertEqual(len({w["serial"] for w in workers}), 2)
        self.assertEqual(sum(w["accepted"] for w in workers), 1)
        self.assertEqual(sum(w["served"] for w in workers), 1)
        for w in workers:
            self.assertEqual((w["generation"], w["state"], w["health"]),
                             (0, "ready", "unchecked"))
            self.assertEqual((w["connections"], w["restarts"]), (0, 0))
            self.assertGreater(w["age_s"], 0)
            self.assertLess(w["age_s"], st["uptime_s"] + 1)
            rss = vm_rss_kb(w["pid"])
            self.assertIsInstance(w["rss_kb"], int)
            self.assertLess(abs(w["rss_kb"] - rss), max(rss, 1024), (w, rss))
            path = w["address"][len("unix:"):]
            self.assertTrue(w["address"].startswith("unix:%s/web/" % d.runtime_dir), w)
            self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
        # The table says the same for people.
        p = d.ctl("status")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("service web: running", p.stdout)
        for pid in pids:
            self.assertIn(" %d " % pid, p.stdout)

    def test_status_counts_a_crash_as_a_restart_of_its_slot(self):
        d = self.start_daemon([harness.hello(worker_count=1)])
        [pid] = d.wait_ready(1)
        os.kill(pid, 9)
        svc = self.wait_service(
            d, "a replacement worker", lambda s: any(
                w["state"] == "ready" and w["pid"] != pid for w in s["workers"]))
        [w] = [w for w in svc["workers"] if w["state"] == "ready"]
        self.assertEqual(w["restarts"], 1)

    def test_conns_shows_a_live_connection_with_its_worker_and_bytes(self):
        out = self.path("greet")
        os.makedirs(out)
        d = self.start_daemon([{"name": "py", "command": [harness.PYTHON, harness.PYWORKER,
                                                          "greet", out], "worker_count": 1}])
        [pid] = d.wait_ready(1)
        connected = time.monotonic()
        c = harness.connect(d.port)
        self.addCleanup(c.close)
        c.sendall(b"x" * 100)
        got = b""
        for _ in range(100):
            got += c.recv(100)
            if got.endswith(b"\n"):
                break
        self.assertEqual(got, b"HELLO\n")
        me = "%s:%d" % c.getsockname()

        def conn_seen():
            p = d.ctl("-j", "conns")
            self.assertEqual(p.returncode, 0, p.stderr)
            conns = json.loads(p.stdout)
            self.assertEqual(conns["version"], 1)
            mine = [x for x in conns["connections"] if x["client"] == me]
            return mine[0] if mine and mine[0]["bytes_in"] == 100 else None

        conn = harness.wait_until(conn_seen, 10, interval=0.1, what="the connection in conns")
        self.assertEqual(conn["service"], "py")
        self.assertEqual(conn["listener"], "127.0.0.1:%d" % d.port)
        self.assertEqual(conn["worker_pid"], pid)
        self.assertEqual(conn["state"], "open")
        self.assertEqual((conn["bytes_in"], conn["bytes_out"]), (100, 6))
        self.assertGreaterEqual(conn["queue_wait_s"], 0)
        # The relay's clock is CLOCK_MONOTONIC_COARSE: right after the accept it may still
        # read the accept's millisecond.
        self.assertGreaterEqual(conn["age_s"], 0)
        self.assertLessEqual(conn["age_s"], time.monotonic() - connected + 0.05)
        self.assertEqual(d.service()["connections"], 1)
        [w] = d.service()["workers"]
        self.assertEqual(w["connections"], 1)
        p = d.ctl("conns", "py")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(me, p.stdout)
        self.assertIn(str(pid), p.stdout)
        p = d.ctl("conns", "nosuch")
        self.assertEqual(p.returncode, 1)
        self.assertIn('unknown service "nosuch"', p.stderr)

    def test_reload_waits_for_the_new_generation_and_a_bad_file_fails_with_file_line(self):
        d = self.start_daemon([harness.hello(worker_count=2)])
        old = d.wait_ready(2)
        p = d.ctl("reload")
        self.assertEqual(p.returncode, 0, p.stderr)
        svc = d.service()
        self.assertEqual(svc["generation"], 1)
        # Waited: the new generation's minimum pool was ready when reload returned.
        self.assertEqual(len([w for w in svc["workers"]
                              if w["generation"] == 1 and w["state"] == "ready"]), 2, svc)
        self.assertEqual(d.status()["reloads"]["ok"], 1)
        new = d.ready_pids(generation=1)
        self.assertFalse(set(new) & set(old))

        with open(d.config_path) as f:
            text = f.read()
        lines = text.count("\n")
        with open(d.config_path, "a") as f:
            f.write("service \"bad\" {\n    listen = { \"127.0.0.1:1\" }\n"
                    "    command = \"socketnaut-hello\"\n    min_workers = 9\n"
                    "    max_workers = 2\n}\n")
        # As the unit's ExecReload= does: the socket found from the broken file itself.
        p = harness.subprocess.run([harness.CTL, "-c", d.config_path, "reload"],
                                   capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2, (p.stdout, p.stderr))
        self.assertIn("%s:%d: min_workers (9) is greater than max_workers (2)"
                      % (d.config_path, lines + 5), p.stderr)
        self.assertIn("reload refused", p.stderr)
        st = d.status()
        self.assertEqual((st["reloads"]["failed"], st["reloads"]["last_result"]), (1, "failed"))
        self.assertEqual([s["name"] for s in st["services"]], ["web"])
        self.assertEqual(st["services"][0]["generation"], 1)
        self.assertEqual(d.ready_pids(), new)
        harness.http_ok(self, d.port)

    def test_reload_to_workers_that_cannot_start_exits_4_and_the_old_ones_serve(self):
        d = self.start_daemon([harness.hello(worker_count=1)])
        [old] = d.wait_ready(1)
        with open(d.config_path) as f:
            text = f.read()
        with open(d.config_path, "w") as f:
            f.write(text.replace('"socketnaut-hello --socket {socket}"', '"/bin/false"'))
        p = d.ctl("-t", "60", "reload")
        self.assertEqual(p.returncode, 4, (p.stdout, p.stderr))
        self.assertIn("service web: the new workers fail to start", p.stderr)
        self.assertEqual(d.ready_pids(), [old])
        harness.http_ok(self, d.port)

    def test_scale_up_and_down_is_seen_in_status(self):
        d = self.start_daemon([harness.hello(min_workers=1, max_workers=4)])
        d.wait_ready(1)
        p = d.ctl("scale", "web", "3")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.wait_service(d, "3 ready workers", lambda s: s["workers_ready"] == 3 and
                          (s["min_workers"], s["max_workers"]) == (3, 3))
        p = d.ctl("scale", "web", "min", "1")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = d.ctl("scale", "web", "max", "1")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.wait_service(d, "1 worker left", lambda s: s["workers_ready"] == 1 and
                          len(s["workers"]) == 1 and s["max_workers"] == 1)
        for args, why in ((("web", "min", "2"), "min 2, max 1"),
                          (("web", "0"), "min 0, max 0"),
                          (("web", "max", "5000"), "not a number from 0 to 4096"),
                          (("web", "many"), "not a number"),
                          (("nosuch", "2"), 'unknown service "nosuch"')):
            p = d.ctl("scale", *args)
            self.assertEqual(p.returncode, 1, (args, p.stderr))
            self.assertIn(why, p.stderr)
        self.assertEqual(d.ctl("scale", "web").returncode, 64)
        svc = d.service()
        self.assertEqual((svc["min_workers"], svc["max_workers"]), (1, 1))
        # Until the next reload: then the file's bounds again.
        self.assertEqual(d.ctl("reload").returncode, 0)
        svc = d.service()
        self.assertEqual((svc["min_workers"], svc["max_workers"]), (1, 4))

    def test_restart_replaces_every_worker_without_a_failed_request(self):
        d = self.start_daemon([harness.hello(worker_count=2)])
        old = d.wait_ready(2)
        results = {"ok": 0, "failed": []}
        stop = threading.Event()

        def clients():
            for _ in range(5000):
                if stop.is_set():
                    return
                try:
                    r = harness.http(d.port, timeout=10)
                    if r.status == 200:
                        results["ok"] += 1
                    else:
                        results["failed"].append(r.status)
                except Exception as e:  # noqa: BLE001 - every failure counts
                    results["failed"].append(repr(e))

        t = threading.Thread(target=clients)
        t.start()
        try:
            harness.wait_until(lambda: results["ok"] >= 5, 10, what="clients served")
            p = d.ctl("restart", "web")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("generation 1 ready", p.stdout)
            harness.wait_until(lambda: not set(old) & {w["pid"] for w in
                                                       d.service()["workers"]},
                               15, interval=0.1, what="every old worker gone")
            served = results["ok"]
            harness.wait_until(lambda: results["ok"] >= served + 5, 10, what="more clients")
        finally:
            stop.set()
            t.join(30)
        self.assertEqual(results["failed"], [])
        new = d.ready_pids()
        self.assertEqual(len(new), 2)
        self.assertFalse(set(new) & set(old))
        self.assertEqual(d.service()["generation"], 1)
        self.assertEqual(d.ctl("restart", "nosuch").returncode, 1)

    def test_drain_one_worker_stops_it_and_the_pool_replaces_it(self):
        d = self.start_daemon([harness.hello(worker_count=2)])
        pids = d.wait_ready(2)
        p = d.ctl("drain", "web", str(pids[0]))
        self.assertEqual(p.returncode, 0, p.stderr)
        harness.wait_until(lambda: not harness.proc_alive(pids[0]), 15, what="drained worker gone")
        svc = self.wait_service(d, "a replacement", lambda s: s["workers_ready"] == 2)
        now = sorted(w["pid"] for w in svc["workers"])
        self.assertIn(pids[1], now)
        self.assertNotIn(pids[0], now)
        p = d.ctl("drain", "web", "999999999")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no worker with pid 999999999", p.stderr)
        self.assertEqual(d.ctl("drain", "web", "abc").returncode, 1)

    def test_stop_shuts_down_gracefully_and_removes_the_socket(self):
        d = self.start_daemon([harness.hello(worker_count=1)])
        d.wait_ready(1)
        self.assertTrue(stat.S_ISSOCK(os.lstat(d.admin_socket).st_mode))
        self.assertEqual(stat.S_IMODE(os.lstat(d.admin_socket).st_mode), 0o600)
        p = d.ctl("stop")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(d.proc.wait(15), 0)
        self.assertFalse(os.path.exists(d.admin_socket))
        p = d.ctl("status")
        self.assertEqual(p.returncode, 5)
        self.assertIn("cannot reach socketnautd", p.stderr)

    def test_unknown_command_and_usage(self):
        d = self.start_daemon([harness.hello(worker_count=1)])
        p = d.ctl("frobnicate")
        self.assertEqual(p.returncode, 64)
        self.assertIn('unknown command "frobnicate"', p.stderr)
        p = harness.subprocess.run([harness.CTL, "-h"], capture_output=True, text=True,
                                   timeout=10)
        self.assertEqual(p.returncode, 0)
        for word in ("status", "conns", "reload", "scale", "restart", "drain", "stop", "-t"):
            self.assertIn(word, p.stdout)

    def test_config_file_finds_the_socket_and_off_disables_it(self):
        sock = self.path("ctl.sock")
        d = self.start_daemon([harness.hello(worker_count=1)],
                              global_opts={"admin_socket": sock})
        d.wait_ready(1)
        p = harness.subprocess.run([harness.CTL, "-c", d.config_path, "-j", "status"],
                                   capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["pid"], d.pid)
        self.stop_daemon(d)
        d2 = self.start_daemon([harness.hello(worker_count=1)],
                               global_opts={"admin_socket": "off"}, name="off")
        d2.wait_workers(1)
        self.assertFalse(os.path.exists(os.path.join(d2.runtime_dir, "admin.sock")))
        p = harness.subprocess.run([harness.CTL, "-c", d2.config_path, "status"],
                                   capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 5)
        self.assertIn("admin_socket is off", p.stderr)

    def test_reload_keeps_the_admin_socket_where_it_is(self):
        d = self.start_daemon([harness.hello(worker_count=1)])
        d.wait_ready(1)
        other = self.path("other.sock")
        with open(d.config_path, "a") as f:
            f.write('admin_socket = "%s"\n' % other)
        p = d.ctl("reload")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertFalse(os.path.exists(other))
        self.assertEqual(d.status()["reloads"]["ok"], 1)
        self.assertIn("admin_socket or admin_group changed: restart socketnautd to apply it",
                      d.log())

    def test_bad_admin_options_name_their_line(self):
        cases = [('admin_socket = "relative.sock"', "admin_socket must be off or the absolute"),
                 ('admin_group = "no-such-group-sn"', 'admin_group: unknown group'),
                 ('admin_socket = "/%s.sock"' % ("x" * 120), "admin_socket /xxx")]
        for line, why in cases:
            conf = self.write_file("bad.conf", "%s\nservice \"web\" {\n    listen = "
                                   "{ \"127.0.0.1:1\" }\n    command = \"socketnaut-hello\"\n}\n"
                                   % line)
            rc, _, err = harness.run_check(conf)
            self.assertEqual(rc, 1, err)
            self.assertIn("%s:1: %s" % (conf, why), err)

    def test_a_stale_socket_is_replaced_and_a_file_in_its_place_is_refused(self):
        run = self.path("run")
        os.makedirs(run, mode=0o755)
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(os.path.join(run, "admin.sock"))
        stale.close()
        d = self.start_daemon([harness.hello(worker_count=1)])
        d.wait_ready(1)
        self.assertEqual(d.status()["pid"], d.pid)
        self.stop_daemon(d)
        self.write_file("run/admin.sock", "not a socket")
        d2 = self.start_daemon([harness.hello(worker_count=1)], wait=False, name="again")
        self.assertEqual(d2.proc.wait(15), 1)
        self.assertIn("exists and is not a socket", d2.log())

    def test_a_throwaway_user_is_refused_and_admin_group_lets_a_member_in(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        member = harness.throwaway_user(self, "sna")
        outsider = harness.throwaway_user(self, "snb")
        ctl = harness.public_copy(self, harness.CTL)
        os.chmod(self.tmp, 0o755)
        import grp
        group = grp.getgrgid(member.pw_gid).gr_name
        d = self.start_daemon([harness.hello(worker_count=1)],
                              global_opts={"admin_group": group})
        d.wait_ready(1)
        st = os.lstat(d.admin_socket)
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_gid), (0o660, member.pw_gid))
        p = d.ctl("-j", "status", user=member.pw_uid, group=member.pw_gid, ctl=ctl)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["pid"], d.pid)
        # The file mode keeps the outsider out; opened up, the credential check still does.
        p = d.ctl("status", user=outsider.pw_uid, group=outsider.pw_gid, extra_groups=[],
                  ctl=ctl)
        self.assertEqual(p.returncode, 5)
        self.assertIn("Permission denied", p.stderr)
        os.chmod(d.admin_socket, 0o666)
        p = d.ctl("status", user=outsider.pw_uid, group=outsider.pw_gid, extra_groups=[],
                  ctl=ctl)
        self.assertEqual(p.returncode, 5, (p.stdout, p.stderr))
        self.assertEqual(p.stdout, "")
        harness.wait_until(lambda: "admin socket: refused uid %d" % outsider.pw_uid in d.log(),
                           10, what="the refusal logged")
        self.assertEqual(d.status()["pid"], d.pid)

    def test_a_member_holding_every_connection_with_unread_answers_cannot_keep_root_out(self):
        # 64 clients of one admin_group member, each with answers it never reads: none is
        # idle, so none made room and root's socketnautctl was refused.
        if os.geteuid() != 0:
            self.skipTest("needs root")
        member = harness.throwaway_user(self, "sna")
        os.chmod(self.tmp, 0o755)
        import grp
        group = grp.getgrgid(member.pw_gid).gr_name
        d = self.start_daemon([harness.hello(worker_count=1)],
                              global_opts={"admin_group": group})
        d.wait_ready(1)
        os.mkdir(self.path("out"))
        os.chown(self.path("out"), member.pw_uid, member.pw_gid)
        held = self.path("out", "held")
        hog = self.write_file("hog.py", HOG, 0o755)
        p = subprocess.Popen([harness.PYTHON, hog, d.admin_socket, held], user=member.pw_uid,
                             group=member.pw_gid, extra_groups=[], stdout=subprocess.DEVNULL)
        self.addCleanup(p.wait, 10)
        self.addCleanup(p.kill)
        harness.wait_until(lambda: os.path.exists(held), 60, what="the member's 64 clients")
        with open(held) as f:
            self.assertEqual(f.read(), "64 unread")
        self.assertEqual(d.status(timeout=20)["pid"], d.pid)
        self.assertIn("uid %d (pid %d): closed to make room" % (member.pw_uid, p.pid), d.log())

    def test_garbage_oversized_and_unread_clients_do_not_hurt_the_daemon(self):
        d = self.start_daemon([harness.hello(worker_count=1)])
        d.wait_ready(1)
        for bad in (b"\x02" + b"\x01" * 7,                      # another version
                    HDR.pack(1, 9, 0, 0),                      # unknown type
                    HDR.pack(1, DONE, 0, 1) + b"\x00",          # a master's frame
                    HDR.pack(1, REQUEST, 0, 1 << 30),          # oversized
                    HDR.pack(1, REQUEST, 0, 4097) + b"x" * 4097):
            s = admin_connect(d)
            s.sendall(bad)
            self.assertTrue(closed_by_peer(s), bad[:8])
            s.close()
        # Words with control bytes: refused, the connection stays usable.
        s = admin_connect(d)
        s.sendall(HDR.pack(1, REQUEST, 0, 7) + b"sta\x01tus")
        _, err, code = read_answer(s)
        self.assertEqual(code, 64)
        s.sendall(request(["status"], flags=1))
        out, _, code = read_answer(s)
        self.assertEqual((code, json.loads(out)["pid"]), (0, d.pid))
        s.close()
        # A client that asks and asks and never reads: its answers wait, the daemon serves.
        hog = admin_connect(d)
        hog.setblocking(False)
        sent = 0
        for _ in range(2000):
            try:
                sent += hog.send(request(["conns"], flags=1))
            except BlockingIOError:
                break
        # More silent clients than the daemon serves at once (64): the oldest make room.
        silent = [admin_connect(d) for _ in range(70)]
        start = time.monotonic()
        for _ in range(3):
            self.assertEqual(d.status()["pid"], d.pid)
        self.assertLess(time.monotonic() - start, 20)
        harness.http_ok(self, d.port)
        self.assertLess(vm_rss_kb(d.pid), 200 * 1024)
        for s in silent + [hog]:
            s.close()

    def test_a_long_status_streams_in_frames_while_a_reader_lags(self):
        n = 320
        held = []  # distinct free ports: each held until all are chosen
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
        ports = [s.getsockname()[1] for s in held]
        for s in held:
            s.close()
        services = [{"name": "s%03d" % i, "command": "socketnaut-hello --socket {socket}",
                     "listen": ["127.0.0.1:%d" % ports[i]], "min_workers": 0,
                     "max_workers": 1} for i in range(n)]
        d = self.start_daemon(services, wait=False)
        harness.wait_until(lambda: os.path.exists(d.admin_socket), 15, what="admin socket")
        self.assertEqual(len(d.status()["services"]), n)
        s = admin_connect(d, timeout=30)
        s.sendall(request(["status"], flags=1))
        time.sleep(0.5)  # the lagging reader: the answer waits in frames
        self.assertEqual(len(d.status()["services"]), n)
        out, _, code = read_answer(s)
        self.assertEqual(code, 0)
        st = json.loads(out)
        self.assertEqual([x["name"] for x in st["services"]], ["s%03d" % i for i in range(n)])
        self.assertGreater(len(out), 65536)
        s.close()
