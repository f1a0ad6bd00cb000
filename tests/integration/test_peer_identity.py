"""Peer info names the true client only to the worker connection the master relayed it on:
another local user cannot pass as a relayed connection (same port from another loopback
address, or squatted abstract names), and a worker's queries for connections it does not
have cost the master one bounded lookup each, so other services keep answering."""

import json
import os
import socket
import subprocess
import threading
import time
import unittest

import harness
import test_agents_py

HOSTILE = os.path.join(harness.HERE, "hostile.py")

# Run as nobody: the master's ends of its connections to the worker's port (argv[1]) from
# /proc/net/tcp; connect to the worker from 127.0.0.2 with the first of those ports, GET /
# and print the worker's answer (JSON: the key it asked with and the peer info it got).
SPOOFER = r"""
import socket, sys, time
wport = int(sys.argv[1])
ports = []
for _ in range(200):
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        f = line.split()
        local, remote = f[1].split(":"), f[2].split(":")
        if f[3] == "01" and int(remote[1], 16) == wport and local[0] == "0100007F":
            ports.append(int(local[1], 16))
    if ports:
        break
    time.sleep(0.05)
s = socket.socket()
s.bind(("127.0.0.2", ports[0]))
s.connect(("127.0.0.1", wport))
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
sys.stdout.write(data.split(b"\r\n\r\n", 1)[1].decode())
"""

# Run as nobody: bind the abstract names the master would give its next connections as
# an attacker would guess them: "sn-PID-N" for N from 1, and each name of the master's
# seen in /proc/net/unix with its last number counted on.  Prints how many, then holds
# them for argv[2] seconds.
SQUATTER = r"""
import re, socket, sys, time
pid, secs = int(sys.argv[1]), float(sys.argv[2])
names = [b"sn-%x-%x" % (pid, n) for n in range(1, 3001)]
for line in open("/proc/net/unix").read().splitlines()[1:]:
    m = re.search(r"@(sn-%x-[-0-9a-f]*?)([0-9a-f]+)$" % pid, line)
    if m:
        n = int(m.group(2), 16)
        names += [b"%s%x" % (m.group(1).encode(), n + k) for k in range(1, 500)]
keep = []
for name in names:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(b"\0" + name)
        keep.append(s)
    except OSError:
        s.close()
print(len(keep), flush=True)
time.sleep(secs)
"""


class PeerIdentityTest(harness.DaemonTest):

    def worker_service(self, name, mode, **kw):
        worker = self.write_file("worker.py", test_agents_py.WORKER)
        svc = {"name": name, "worker_count": 1, "ready_timeout": "15s",
               "command": [harness.PYTHON, worker, mode, test_agents_py.AGENT_DIR],
               "backend": "agent" if mode == "agent" else mode}
        svc.update(kw)
        return svc

    def run_as_nobody(self, script, *args, **kw):
        path = self.write_file(os.path.basename(script[0]), script[1])
        os.chmod(self.tmp, 0o755)
        return subprocess.Popen([harness.PYTHON, path] + [str(a) for a in args],
                                user="nobody", stdout=subprocess.PIPE, text=True, **kw)

    def test_same_port_from_another_loopback_address_gets_no_peer_info(self):
        d = self.start_daemon([self.worker_service("vic", "agent")])
        wport = test_agents_py.get_json(d.port, timeout=20)[0]["listen"][1]
        held = {}

        def victim():
            # the true client, from 127.0.0.9, holds its relay open for 3 s
            c = socket.socket()
            c.bind(("127.0.0.9", 0))
            c.connect(("127.0.0.1", d.port))
            held["mine"] = c.getsockname()
            with harness.Conn(d.port, sock=c, timeout=20) as conn:
                held["body"] = conn.request("GET", "/?wait=3000").body

        t = threading.Thread(target=victim)
        t.start()
        spoof = self.run_as_nobody(("spoof.py", SPOOFER), wport)
        out, _ = spoof.communicate(timeout=30)
        t.join(30)
        body = json.loads(out)
        self.assertIsNone(body["info"], "a connection from 127.0.0.2 with the master's port "
                          "was told %r (its key %r)" % (body["info"], body["key"]))
        self.assertTrue(body["key"].startswith("127.0.0.2:"), body["key"])
        victim_body = json.loads(held["body"])
        self.assertEqual(victim_body["info"]["remote"]["address"], "127.0.0.9")
        self.assertEqual(victim_body["info"]["remote"]["port"], held["mine"][1])
        self.assertEqual(victim_body["key"].split(":")[0], "127.0.0.1")
        self.stop_daemon(d)

    def test_bare_port_key_gets_no_peer_info(self):
        # A port alone cannot tell the master's connection from one of another address.
        worker = self.write_file("bare.py", (
            "import json, socket, sys\n"
            "sys.path.insert(0, %r)\n"
            "from socketnaut_agent import ServiceAgent, connection_key\n"
            "agent = ServiceAgent()\n"
            "s = socket.create_server(('127.0.0.1', 0))\n"
            "agent.ready(port=s.getsockname()[1])\n"
            "while True:\n"
            "    c, _ = s.accept()\n"
            "    c.recv(65536)\n"
            "    peer = c.getpeername()\n"
            "    body = json.dumps([agent.peer_info(str(peer[1])),\n"
            "                       agent.peer_info('%%s:%%d' %% peer[:2])]).encode()\n"
            "    c.sendall(b'HTTP/1.0 200 OK\\r\\nContent-Length: %%d\\r\\n\\r\\n' %% len(body)\n"
            "              + body)\n"
            "    c.close()\n") % test_agents_py.AGENT_DIR)
        d = self.start_daemon([{"name": "bare", "worker_count": 1, "backend": "agent",
                                "command": [harness.PYTHON, worker]}])
        for _ in range(2):
            with harness.Conn(d.port, timeout=20) as c:
                mine = c.sock.getsockname()
                r = c.request("GET", "/")
            bare, full = json.loads(r.body)
            self.assertIsNone(bare)
            self.assertEqual((full["remote"]["address"], full["remote"]["port"]), mine[:2])
        # Told once, so that an old agent is found and updated.
        self.assertEqual(d.log().count("peer-query with a bare port"), 1)
        self.stop_daemon(d)

    def test_squatted_abstract_names_leave_every_connection_named(self):
        d = self.start_daemon([self.worker_service("sq", "unix")])
        body = test_agents_py.get_json(d.port, timeout=20)[0]
        self.assertTrue(body["key"].startswith("@sn-"), body["key"])
        squat = self.run_as_nobody(("squat.py", SQUATTER), d.pid, 60)
        self.addCleanup(squat.stdout.close)
        self.addCleanup(squat.wait, 10)
        self.addCleanup(squat.kill)
        self.assertGreater(int(squat.stdout.readline()), 1000, "the squatter holds no names")
        results, lock = [], threading.Lock()

        def client(i):
            try:
                got = test_agents_py.get_json(d.port, path="/?wait=%d" % (2000 - 10 * i),
                                              timeout=30)
            except Exception as e:  # noqa: BLE001 - any failure counts
                got = repr(e)
            with lock:
                results.append(got)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
        for t in threads:
            t.start()
            time.sleep(0.005)
        for t in threads:
            t.join(60)
        bad = [r for r in results if isinstance(r, str) or not r[0]["key"].startswith("@sn-")
               or r[0]["info"] is None
               or r[0]["info"]["remote"]["port"] != r[1][1]]
        self.assertEqual(len(results), 100)
        self.assertEqual(bad[:3], [], "%d of 100 clients unnamed or without peer info" % len(bad))
        self.stop_daemon(d)

    def test_inode_query_flood_leaves_other_services_answering(self):
        out = self.path("flood")
        good = harness.hello(name="good", worker_count=2)
        bad = {"name": "bad", "worker_count": 1,
               "command": [harness.PYTHON, HOSTILE, "ino-flood", out, "9000"]}
        d = self.start_daemon([good, bad], min_ready=3)
        harness.http_ok(self, d.ports["good"])
        # Connections made before the worker spoke are unnamed: the ones an ino: key finds.
        idle = [harness.connect(d.ports["bad"]) for _ in range(64)]
        for c in idle:
            self.addCleanup(c.close)
        time.sleep(1.0)
        t0 = time.monotonic()
        with open(out + ".go", "w"):
            pass
        errors, slowest, done = harness.load_until(d.ports["good"], t0 + 5.0, timeout=20)
        harness.wait_until(lambda: os.path.exists(out), 30, what="the flood to end")
        with open(out) as f:
            sent = int(f.read())
        self.assertGreater(sent, 1000, "the worker sent too few queries to tell")
        self.assertEqual(errors, [], "clients of the good service saw errors")
        # generous: the old master took 7 s for one request under this flood
        self.assertLess(slowest, 1.0, "a request to the good service took %.2f s" % slowest)
        self.assertGreater(done, 20, "too few requests went through")
        self.assertTrue(d.alive(), "the master died")
        self.stop_daemon(d)


if __name__ == "__main__":
    unittest.main()
