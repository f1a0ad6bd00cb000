"""A TCP worker's port is its own before it gets clients: a local process that binds the port
first (it shows in the worker's argv), or holds the port an agent reports, is refused, never
given a client, and the refusal shows in the log and in the status; the worker serves once it
holds its port, also through a child of its own."""

import os
import subprocess
import threading
import time
import unittest

import harness
from harness import Raw

# A slow-starting server on argv[1]: it binds after a second, and again every 50 ms while the
# port is taken (as a supervisor restarting it would), for at most 30 s.
VICTIM = r'''
import http.server, os, sys, time
time.sleep(1.0)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = b"victim ok pid %d\n" % os.getpid()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H,
                                      bind_and_activate=False)
for _ in range(600):
    try:
        srv.server_bind()
        break
    except OSError:
        time.sleep(0.05)
srv.server_activate()
srv.serve_forever()
'''

# The attacker: finds the workers by their command line in /proc, binds their port first,
# and says (one line each) which ports it took and every request it got, for argv[2] s.
THIEF = r'''
import os, socket, sys, threading, time
def serve(s):
    while True:
        c, _ = s.accept()
        data = c.recv(65536)
        if data:
            print("got %r" % data[:100], flush=True)
        b = b"HIJACKED by uid %d\n" % os.getuid()
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(b) + b)
        c.close()
seen = set()
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    for p in os.listdir("/proc"):
        if not p.isdigit() or p in seen:
            continue
        try:
            cmd = open("/proc/%s/cmdline" % p, "rb").read().split(b"\0")
        except OSError:
            continue
        if len(cmd) > 2 and cmd[1] == sys.argv[1].encode():
            seen.add(p)
            s = socket.socket()
            # Its connections' TIME_WAIT must not keep the worker off the port later.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", int(cmd[2])))
                s.listen(64)
            except OSError as e:
                print("missed %s: %s" % (cmd[2], e), flush=True)
                continue
            print("bound %s" % cmd[2].decode(), flush=True)
            threading.Thread(target=serve, args=(s,), daemon=True).start()
    time.sleep(0.002)
'''


# Another user's listener on argv[1]: says "bound", then "got" for every request, "conn" for a
# connection that sends nothing (a health check).
HOLDER = r'''
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
print("bound", flush=True)
while True:
    c, _ = s.accept()
    data = c.recv(100)
    print("got %r" % data if data else "conn", flush=True)
    c.close()
'''

# A server on argv[1] that closes its listening socket on GET /close, and lives on.
CLOSER = r'''
import socket, sys, time
def reply(c, text):
    b = text.encode()
    try:
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(b) + b)
    except OSError:
        pass
    c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(64)
while True:
    c, _ = s.accept()
    data = c.recv(65536)
    if b"/close" in data:
        reply(c, "closing\n")
        s.close()
        time.sleep(3600)
    reply(c, "victim ok\n")
'''

# An agent that reports argv[2] as its port without listening there.
LIAR = r'''
import sys, time
sys.path.insert(0, sys.argv[1])
from socketnaut_agent import ServiceAgent
ServiceAgent().ready(port=int(sys.argv[2]))
time.sleep(60)
'''

AGENT_DIR = os.path.join(harness.ROOT, "agents", "python")


@unittest.skipUnless(os.geteuid() == 0, "needs root (a second user)")
class TcpOwnershipTest(harness.DaemonTest):

    def start_thief(self, user, seconds):
        os.chmod(self.tmp, 0o755)
        self.victim = self.write_file("victim.py", VICTIM, 0o755)
        thief = self.write_file("thief.py", THIEF, 0o755)
        self.thief_out = self.path("thief.out")
        out = open(self.thief_out, "w")
        self.addCleanup(out.close)
        p = subprocess.Popen([harness.PYTHON, thief, self.victim, str(seconds)], user=user,
                             stdout=out, stderr=subprocess.STDOUT)
        self.addCleanup(p.wait, 10)
        self.addCleanup(p.kill)
        return p

    def thief_said(self, word):
        with open(self.thief_out) as f:
            return [line for line in f if line.startswith(word)]

    def refusals(self, d):
        """The address_refused texts of the service's workers now (status -j)."""
        try:
            return [w["address_refused"] for w in d.service("vic")["workers"]
                    if w.get("address_refused")]
        except (AssertionError, ValueError, subprocess.TimeoutExpired):
            return []

    def assert_served_by_the_worker(self, d):
        """Five requests answered by the worker, none reaching the holder of its port."""
        bodies = []
        for _ in range(5):
            try:
                bodies.append(harness.http(d.port, path="/secret?token=abc").body)
            except Exception as e:  # the holder answers no HTTP: said below
                bodies.append(repr(e).encode())
        self.assertEqual(self.thief_said("got"), [], "a client reached the holder")
        self.assertEqual(bodies, [b"victim ok\n"] * 5)

    def hijack(self, worker_user, thief_user, expect):
        """The thief (as thief_user) takes the first worker's port for 4 s while clients
        come; they must all be served by the real worker once the thief is gone."""
        thief = self.start_thief(thief_user, 4)
        svc = {"name": "vic", "backend": "tcp", "worker_count": 1, "ready_timeout": "30s",
               "queue_timeout": "30s", "command": "%s %s {port}" % (harness.PYTHON,
                                                                    self.victim)}
        if worker_user is not None:
            svc["user"] = worker_user
        d = self.start_daemon([svc])
        harness.wait_until(lambda: self.thief_said("bound"), 10, what="the thief to bind")

        bodies = []

        def client():
            try:
                bodies.append(harness.http(d.ports["vic"], path="/secret?token=abc",
                                           timeout=30).body)
            except Exception as e:  # kept: the assertion below says what came back
                bodies.append(repr(e).encode())

        clients = [threading.Thread(target=client) for _ in range(3)]
        for c in clients:
            c.start()
        refused = []
        start = time.monotonic()
        while any(c.is_alive() for c in clients) and time.monotonic() < start + 40:
            refused = refused or self.refusals(d)
            if time.monotonic() > start + 5:
                thief.kill()  # it ends by itself, unless /proc hangs it
            time.sleep(0.1)
        for c in clients:
            c.join(1)
        thief.wait(10)
        self.assertEqual(self.thief_said("got"), [], "a client reached the thief")
        self.assertEqual(len(bodies), 3)
        for b in bodies:
            self.assertTrue(b.startswith(b"victim ok"), b)
        self.assertTrue(refused, "no refusal in the status while the thief held the port")
        self.assertIn(expect, refused[0])
        self.assertIn(expect, d.log())
        self.assertIn("not ready while it is", d.log())
        self.assertEqual(self.refusals(d), [], "still refused once its port is its own")
        return d

    def test_port_taken_by_another_user_is_refused_until_the_worker_holds_it(self):
        thief = harness.throwaway_user(self)
        self.hijack(None, thief.pw_name,
                    "the port is held by uid %d, not the worker's user (uid 0)" % thief.pw_uid)

    def test_port_taken_by_the_workers_own_user_outside_its_processes_is_refused(self):
        user = harness.throwaway_user(self)
        self.hijack(user.pw_name, user.pw_name, "the port is held by uid %d, but by no "
                    "process of the worker" % user.pw_uid)

    def start_holder(self, user, port):
        os.chmod(self.tmp, 0o755)
        self.thief_out = self.path("thief.out")
        holder = self.write_file("holder.py", HOLDER, 0o755)
        with open(self.thief_out, "w") as out:
            p = subprocess.Popen([harness.PYTHON, holder, str(port)], user=user.pw_name,
                                 stdout=out, stderr=subprocess.STDOUT)
        self.addCleanup(p.wait, 10)
        self.addCleanup(p.kill)
        harness.wait_until(lambda: self.thief_said("bound"), 10, what="the holder to bind")

    def test_agent_reporting_a_port_another_user_holds_is_never_ready(self):
        user = harness.throwaway_user(self)
        port = harness.free_port()
        self.start_holder(user, port)
        agent = self.write_file("agent.py", LIAR, 0o755)
        d = self.start_daemon([{"name": "vic", "backend": "agent", "control": True,
                                "worker_count": 1, "ready_timeout": "2s",
                                "command": [harness.PYTHON, agent, AGENT_DIR, str(port)]}])
        harness.wait_until(lambda: self.refusals(d) or d.ready_pids(), 10,
                           what="the worker's report judged")
        with self.assertRaises(Exception):
            harness.http(d.ports["vic"], path="/secret?token=abc", timeout=3)
        self.assertEqual(self.thief_said("got"), [], "a connection reached the holder")
        self.assertEqual(d.ready_pids(), [])
        refused = harness.wait_until(lambda: self.refusals(d), 10,
                                     what="a refusal in the status")
        self.assertIn("127.0.0.1:%d: the port is held by uid %d, not the worker's user"
                      % (port, user.pw_uid), refused[0])
        harness.wait_until(lambda: "not ready after" in d.log(), 10,
                           what="the worker killed at ready_timeout")

    def test_worker_whose_port_another_user_took_does_not_come_back_healthy(self):
        """Out of rotation (its listener closed, its checks failing), a worker whose port
        another user then binds passes its checks through that user's socket: it stays out."""
        user = harness.throwaway_user(self)
        closer = self.write_file("closer.py", CLOSER, 0o755)
        d = self.start_daemon([{"name": "vic", "backend": "tcp", "min_workers": 1,
                                "max_workers": 3, "command": [harness.PYTHON, closer, "{port}"],
                                "health_check": {"type": "tcp", "interval": "100ms",
                                                 "timeout": "100ms", "rise": 1, "fall": 1}}],
                              global_opts={"shutdown_timeout": "30s"})
        (pid,) = d.wait_ready(1)

        def first():
            return [w for w in d.service("vic")["workers"] if w["pid"] == pid][0]

        port = int(first()["address"].rsplit(":", 1)[1])
        self.assertEqual(harness.http(d.port, path="/close").body, b"closing\n")
        harness.wait_until(lambda: first()["state"] == "unhealthy", 10,
                           what="worker %d out of rotation" % pid)
        self.start_holder(user, port)
        harness.wait_until(lambda: self.thief_said("conn"), 10,
                           what="a health check through the holder's socket")
        harness.wait_until(lambda: first().get("address_refused") or first()["state"] == "ready",
                           10, what="worker %d judged again" % pid)
        self.assert_served_by_the_worker(d)
        self.assertEqual(first()["state"], "unhealthy")
        self.assertIn("the port is held by uid %d, not the worker's user" % user.pw_uid,
                      first()["address_refused"])

    def test_ready_worker_whose_port_another_user_takes_leaves_the_rotation(self):
        """A ready worker that closed its listener while it runs: another user binds the port
        and accepts what the master sends there; the master asks again within a second."""
        user = harness.throwaway_user(self)
        closer = self.write_file("closer.py", CLOSER, 0o755)
        d = self.start_daemon([{"name": "vic", "backend": "tcp", "min_workers": 1,
                                "max_workers": 3,
                                "command": [harness.PYTHON, closer, "{port}"]}])
        (pid,) = d.wait_ready(1)
        port = int(d.service("vic")["workers"][0]["address"].rsplit(":", 1)[1])
        self.assertEqual(harness.http(d.port, path="/close").body, b"closing\n")
        self.start_holder(user, port)
        line = ("worker %d: unhealthy: 127.0.0.1:%d: the port is held by uid %d, not the "
                "worker's user (uid 0); out of rotation" % (pid, port, user.pw_uid))
        harness.wait_until(lambda: line in d.log(), 5, what="worker %d out of rotation" % pid)
        self.assert_served_by_the_worker(d)

    def test_a_ready_worker_stays_when_the_master_runs_out_of_descriptors(self):
        """Out of descriptors, the once-a-second check cannot ask the kernel who listens:
        that is no evidence against a worker that proved its port (the master took every
        TCP worker out of rotation)."""
        hello = harness.public_copy(self, harness.HELLO)
        d = self.start_daemon([{"name": "tcp", "backend": "tcp", "worker_count": 1,
                                "command": hello + " --port {port}"}], nofile=64)
        (pid,) = d.wait_ready(1)
        held = harness.exhaust_fds(d)
        time.sleep(2.5)  # two checks, at least, while out of descriptors
        for c in held:
            c.close()
        harness.http_ok(self, d.port, timeout=10)
        self.assertEqual(d.workers(), [pid])
        self.assertNotIn("unhealthy", d.log())
        self.stop_daemon(d)

    def child_listens(self, cgroup):
        """A worker whose listener is its child's (sh forks the server: a command follows
        it) is ready, found through its cgroup or, without one, its process tree."""
        user = harness.throwaway_user(self)
        hello = harness.public_copy(self, harness.HELLO)
        d = self.start_daemon([{"name": "tcp", "backend": "tcp", "worker_count": 1,
                                "user": user.pw_name, "worker_cgroup": Raw(cgroup),
                                "command": ["/bin/sh", "-c", hello + " --port $0; exit 1",
                                            "{port}"]}])
        r = harness.http_ok(self, d.port, "/pid", timeout=15)
        (sh,) = d.workers()
        self.assertIn(int(r.text.strip()), harness.descendants(sh),
                      "answered by a child of the worker")
        self.assertEqual([w["address_refused"] for w in d.service("tcp")["workers"]],
                         [None])
        self.stop_daemon(d)

    def test_worker_whose_child_listens_is_ready_found_in_its_cgroup(self):
        self.child_listens("auto")

    def test_worker_whose_child_listens_is_ready_found_in_its_process_tree(self):
        self.child_listens("off")


if __name__ == "__main__":
    unittest.main()
