"""The Python agent (agents/python/socketnaut_agent.py) end to end with the real daemon:
readiness (also a worker that picks its own port), the real client address and port of
concurrent clients over IPv4 and IPv6, logs forwarded into the daemon log, drain on reload
and on scale-down (the worker exits by itself), and the examples that use it."""

import concurrent.futures
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

import harness

AGENT_DIR = os.path.join(harness.ROOT, "agents", "python")
EXAMPLES = os.path.join(harness.ROOT, "examples")

# The test worker.  argv[1]: agent (127.0.0.1 port 0, READY port=N), agent6 ([::1] port 0,
# READY address=[::1]:N), unix ($SOCKETNAUT_SOCKET), tcp (127.0.0.1:$PORT), asyncio
# (asyncio server on 127.0.0.1 port 0).  GET /?wait=MS&log=TEXT&level=L answers JSON:
# pid, key, peer info, the worker's own listening address.
WORKER = r'''
import asyncio, json, os, socket, socketserver, sys, time, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
sys.path.insert(0, sys.argv[2])
import socketnaut_agent
from socketnaut_agent import ServiceAgent, connection_key

mode = sys.argv[1]
agent = ServiceAgent()
LISTEN = []


def answer(path, key, info):
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    if "log" in query:
        agent.log(query["log"][0], query.get("level", ["info"])[0])
    return json.dumps({"pid": os.getpid(), "mode": mode, "key": key, "info": info,
                       "listen": LISTEN, "enabled": agent.enabled}).encode()


def wait_ms(path):
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
    return int(query.get("wait", ["0"])[0]) / 1000.0


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(wait_ms(self.path))
        info = agent.peer_info(self)
        body = answer(self.path, connection_key(self), info)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


async def asyncio_main():
    stopped = asyncio.Event()

    async def handle(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ")[1].decode()
        await asyncio.sleep(wait_ms(path))
        info = await agent.peer_info_async(writer)
        body = answer(path, connection_key(writer), info)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)

    async def stop():
        server.close()
        await server.wait_closed()
        stopped.set()

    agent.on_drain(stop)
    LISTEN[:] = list(server.sockets[0].getsockname()[:2])
    agent.ready(port=LISTEN[1])
    await stopped.wait()


if mode == "asyncio":
    asyncio.run(asyncio_main())
    sys.exit(0)
if mode == "agent":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
elif mode == "agent6":
    server = V6Server(("::1", 0), Handler)
elif mode == "tcp":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
else:
    path = os.environ["SOCKETNAUT_SOCKET"]
    if os.path.exists(path):
        os.unlink(path)
    server = UnixServer(path, Handler)
LISTEN[:] = list(server.server_address[:2]) if mode != "unix" else [server.server_address]
agent.attach_http_server(server)
if mode == "agent":
    agent.ready(port=server.server_address[1])
elif mode == "agent6":
    agent.ready(address=("::1", server.server_address[1]))
else:
    agent.ready()
server.serve_forever()
server.server_close()
'''


def get_json(port, host="127.0.0.1", path="/", timeout=10):
    """GET path on a new connection: (decoded JSON body, client's sockname, client's peername)."""
    with harness.Conn(port, host, timeout) as c:
        mine, peer = c.sock.getsockname(), c.sock.getpeername()
        r = c.request("GET", path)
    if r.status != 200:
        raise AssertionError("GET %s answered %r: %r" % (path, r, r.body[:200]))
    return json.loads(r.body), mine, peer


def family_name(host):
    return "IPv6" if ":" in host else "IPv4"


# The test vectors of the protocol spec (socketnaut-agent(7)): (type, fields, text, hex).
VECTORS = [
    (0x01, [], None, "01010000"),
    (0x01, [("port", 8080)], None, "01010009" + b"port=8080".hex()),
    (0x02, [("id", 1), ("key", "127.0.0.1:54321")], None,
     "01020018" + b"id=1\nkey=127.0.0.1:54321".hex()),
    (0x03, [("level", 6)], "hi", "0103000f" + b"level=6\ntext=hi".hex()),
    (0x04, [], None, "01040000"),
]


class PythonAgentCodecTest(unittest.TestCase):
    """The Python agent's frames against the spec's vectors (no daemon)."""

    def setUp(self):
        sys.path.insert(0, AGENT_DIR)
        self.addCleanup(sys.path.remove, AGENT_DIR)
        import socketnaut_agent
        self.a = socketnaut_agent

    def test_frames_match_the_documented_vectors(self):
        for msg_type, fields, text, want in VECTORS:
            self.assertEqual(self.a.encode_frame(msg_type, fields, text).hex(), want)

    def test_replies_decode(self):
        frame = bytes.fromhex("01810013") + b"id=7\nstatus=unknown"
        self.assertEqual(self.a.decode_frame(frame + b"\x01"),
                         (0x81, {"id": "7", "status": "unknown"}, len(frame)))
        self.assertIsNone(self.a.decode_frame(frame[:-1]))
        self.assertEqual(self.a.decode_frame(bytes.fromhex("01820000")), (0x82, {}, 4))
        with self.assertRaises(self.a.ProtocolError):
            self.a.decode_frame(bytes.fromhex("02810000"))
        with self.assertRaises(self.a.ProtocolError):
            self.a.decode_frame(bytes.fromhex("01811001") + b"x" * 4097)

    def test_log_text_is_cut_to_the_maximum_frame_and_values_lose_control_characters(self):
        frame = self.a.encode_frame(0x03, [("level", 6)], "x" * 5000)
        self.assertEqual(len(frame), 4 + 4096)
        frame = self.a.encode_frame(0x02, [("id", 1), ("key", "a\nb")])
        self.assertEqual(frame[4:], b"id=1\nkey=a b")

    def test_concurrent_queries_are_matched_to_out_of_order_replies(self):
        """Fake master on a socketpair: 20 threads query at once, the replies come back in
        reverse order, each thread gets its own; then DRAIN runs the callback and DRAINED
        follows."""
        master, worker = socket.socketpair()
        self.addCleanup(master.close)
        agent = self.a.ServiceAgent(fd=worker.detach())
        self.addCleanup(agent.close)
        self.assertTrue(agent.enabled)
        self.assertEqual(master.recv(4), b"\x01\x05\x00\x00")  # HELLO, on opening
        results = {}

        def query(port):
            results[port] = agent.peer_info(("127.0.0.1", port), timeout=10)

        threads = [threading.Thread(target=query, args=(40000 + i,)) for i in range(20)]
        for t in threads:
            t.start()
        master.settimeout(10)
        buf, queries = b"", []
        while len(queries) < 20:
            buf += master.recv(65536)
            while True:
                frame = self.a.decode_frame(buf)
                if frame is None:
                    break
                msg_type, fields, used = frame
                buf = buf[used:]
                self.assertEqual(msg_type, 0x02)
                queries.append(fields)
        for q in reversed(queries):
            port = int(q["key"].split(":")[1])
            reply = ("id=%s\nstatus=ok\nremote_address=192.0.2.%d\nremote_family=IPv4\n"
                     "remote_port=%d\nlocal_address=127.0.0.1\nlocal_family=IPv4\nlocal_port=80"
                     % (q["id"], port - 40000, port + 1))
            if port == 40007:
                reply = "id=%s\nstatus=unknown" % q["id"]
            master.sendall(struct.pack("!BBH", 1, 0x81, len(reply)) + reply.encode())
        for t in threads:
            t.join(10)
        for i in range(20):
            got = results[40000 + i]
            if i == 7:
                self.assertIsNone(got)
                continue
            self.assertEqual(got, {"remote": {"address": "192.0.2.%d" % i, "family": "IPv4",
                                              "port": 40001 + i},
                                   "local": {"address": "127.0.0.1", "family": "IPv4",
                                             "port": 80}})
        called = threading.Event()
        agent.on_drain(called.set)
        master.sendall(bytes.fromhex("01820000"))
        self.assertTrue(called.wait(10))
        self.assertEqual(master.recv(4), bytes.fromhex("01040000"))

    def test_connection_keys(self):
        key = self.a.connection_key
        self.assertEqual(key(("127.0.0.1", 54321)), "127.0.0.1:54321")
        self.assertEqual(key(("::1", 54321, 0, 0)), "[::1]:54321")
        self.assertEqual(key(b"\x000001f"), "@0001f")
        self.assertEqual(key("\x000001f"), "@0001f")
        # A port alone names no connection: another user may have it on another address.
        self.assertIsNone(key(54321))
        self.assertIsNone(key({"REMOTE_PORT": "4242"}))
        self.assertEqual(key({"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "4242"}),
                         "127.0.0.1:4242")
        self.assertIsNone(key(b""))
        self.assertIsNone(key(None))


class AgentTestBase(harness.DaemonTest):
    """What the Python and Node agent tests share."""

    def worker_service(self, mode, **kw):
        raise NotImplementedError

    def assert_peer_info_matches(self, body, mine, peer, port):
        info = body["info"]
        self.assertIsNotNone(info, "no peer info for %s (key %r)" % (mine, body.get("key")))
        self.assertEqual(info["remote"]["address"], mine[0], info)
        self.assertEqual(info["remote"]["port"], mine[1], info)
        self.assertEqual(info["remote"]["family"], family_name(mine[0]), info)
        self.assertEqual(info["local"]["address"], peer[0], info)
        self.assertEqual(info["local"]["port"], port, info)
        self.assertEqual(info["local"]["family"], family_name(peer[0]), info)

    def dual_stack_listen(self):
        """(port, listen list, hosts): 127.0.0.1:P and, when IPv6 works, [::1]:P."""
        v6 = harness.ipv6_available()
        for _ in range(20):
            port = harness.free_port()
            if not v6:
                return port, ["127.0.0.1:%d" % port], ["127.0.0.1"]
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                    s.bind(("::1", port))
                return port, ["127.0.0.1:%d" % port, "[::1]:%d" % port], ["127.0.0.1", "::1"]
            except OSError:
                continue
        self.fail("no port free on both 127.0.0.1 and ::1")

    def concurrent_clients(self, mode, per_family=6, wait_ms=400, **svc):
        port, listen, hosts = self.dual_stack_listen()
        d = self.start_daemon([self.worker_service(mode, worker_count=1, listen=listen, **svc)],
                              wait=False)
        for host in hosts:
            d.wait_listening(port, host=host)
        # One warm-up request: the worker is ready.
        get_json(port, timeout=20)
        results, errors = [], []
        lock = threading.Lock()

        def client(host):
            try:
                got = get_json(port, host, "/?wait=%d" % wait_ms, timeout=20)
                with lock:
                    results.append(got)
            except Exception as e:          # reported below
                with lock:
                    errors.append("%s: %r" % (host, e))

        threads = [threading.Thread(target=client, args=(h,)) for h in hosts
                   for _ in range(per_family)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertFalse(any(t.is_alive() for t in threads), "clients still running after 30 s")
        self.assertEqual(errors, [])
        self.assertEqual(len(results), per_family * len(hosts))
        pids = set()
        for body, mine, peer in results:
            self.assert_peer_info_matches(body, mine, peer, port)
            pids.add(body["pid"])
        self.assertEqual(len(pids), 1, "worker_count = 1 but answers came from %s" % pids)
        families = {family_name(mine[0]) for _, mine, _ in results}
        self.assertEqual(families, {family_name(h) for h in hosts})
        self.stop_daemon(d)
        return results

    def wait_log(self, d, pattern, timeout=10, what=None):
        rx = re.compile(pattern, re.M)
        return harness.wait_until(lambda: rx.search(d.log()), timeout,
                                  what=what or "log line /%s/" % pattern)

    def assert_drained_and_exited_by_itself(self, d, pid, timeout=10):
        name = re.escape(self.service_name)
        self.wait_log(d, r"service %s: worker %d: (exited with status|killed by)" % (name, pid),
                      timeout, "worker %d to exit" % pid)
        log = d.log()
        self.assertRegex(log, r"service %s: worker %d: drained" % (name, pid))
        self.assertRegex(log, r"service %s: worker %d: exited with status 0" % (name, pid))
        self.assertNotRegex(log, r"worker %d: still running" % pid,
                            "the master had to signal worker %d" % pid)
        self.assertNotRegex(log, r"worker %d: control channel: " % pid)
        self.assertFalse(harness.proc_alive(pid))

    def worker_on_ipv6_reports_its_address(self):
        """backend agent on [::1]: the reported address is used and peer info is right."""
        if not harness.ipv6_available():
            self.skipTest("no IPv6 loopback")
        d = self.start_daemon([self.worker_service("agent6", worker_count=1)])
        body, mine, peer = get_json(d.port, timeout=20)
        self.assertEqual(body["listen"][0], "::1")
        self.assertRegex(d.log(), r"ready at \[::1\]:%d" % body["listen"][1])
        self.assert_peer_info_matches(body, mine, peer, d.port)
        self.stop_daemon(d)

    def tcp_backend_gets_peer_info(self):
        """backend tcp: the worker's peer-info answer matches the client; returns its body."""
        d = self.start_daemon([self.worker_service("tcp", worker_count=1)])
        body, mine, peer = get_json(d.port, timeout=20)
        self.assert_peer_info_matches(body, mine, peer, d.port)
        self.stop_daemon(d)
        return body

    def logs_are_forwarded(self, svc_name, who, info, warn, crit):
        """Log lines reach the daemon's log tagged with service and worker pid, at their
        level; never above "error"; newlines become spaces."""
        d = self.start_daemon([self.worker_service("agent", worker_count=1)])
        body = get_json(d.port, path="/?log=hello%%20from%%20%s&level=%s" % (who, info),
                        timeout=20)[0]
        pid = body["pid"]
        self.wait_log(d, r"(^|\s)info: service %s: worker %d: hello from %s$"
                      % (svc_name, pid, who))
        get_json(d.port, path="/?log=careful&level=%s" % warn)
        self.wait_log(d, r"(^|\s)warning: service %s: worker %d: careful$" % (svc_name, pid))
        get_json(d.port, path="/?log=on%%20fire%%0Asecond&level=%s" % crit)
        self.wait_log(d, r"(^|\s)error: service %s: worker %d: on fire second$"
                      % (svc_name, pid))
        self.assertNotIn("control channel:", d.log())
        self.stop_daemon(d)

    def drain_on_reload(self, mode, **svc):
        d = self.start_daemon([self.worker_service(mode, worker_count=1, **svc)])
        old = get_json(d.port, timeout=20)[0]["pid"]
        self.wait_log(d, r"worker %d: ready at" % old)
        d.proc.send_signal(signal.SIGHUP)
        self.assert_drained_and_exited_by_itself(d, old, timeout=15)
        body = get_json(d.port, timeout=20)[0]
        self.assertNotEqual(body["pid"], old)
        self.assertIsNotNone(body["info"])
        self.stop_daemon(d)

    def drain_on_scale_down(self, mode, **svc):
        d = self.start_daemon([self.worker_service(mode, min_workers=1, max_workers=3,
                                                   workers_checking_interval="1s", **svc)],
                              min_ready=1)
        pids, lock = set(), threading.Lock()

        def client():
            body = get_json(d.port, path="/?wait=1500", timeout=20)[0]
            with lock:
                pids.add(body["pid"])

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
            time.sleep(0.1)
        for t in threads:
            t.join(30)
        self.assertGreaterEqual(len(pids), 2, "the pool did not grow: %s" % pids)
        extra = harness.wait_until(
            lambda: [p for p in pids if re.search(r"worker %d: stopping \(idle\)" % p, d.log())],
            15, what="an idle worker to be stopped")
        for pid in extra:
            self.assert_drained_and_exited_by_itself(d, pid)
        d.wait_workers(1, timeout=10)
        self.stop_daemon(d)


class PythonAgentTest(AgentTestBase):

    service_name = "py"

    def setUp(self):
        super().setUp()
        self.worker = self.write_file("worker.py", WORKER)

    def worker_service(self, mode, **kw):
        svc = {"name": self.service_name,
               "command": [harness.PYTHON, self.worker, mode, AGENT_DIR],
               "backend": {"agent6": "agent", "asyncio": "agent"}.get(mode, mode),
               "ready_timeout": "15s"}
        svc.update(kw)
        return svc

    # readiness ---------------------------------------------------------------------------

    def test_agent_backend_worker_reports_the_port_it_picked(self):
        d = self.start_daemon([self.worker_service("agent", worker_count=1)])
        body, mine, peer = get_json(d.port, timeout=20)
        host, wport = body["listen"]
        self.assertEqual(host, "127.0.0.1")
        self.assertNotEqual(wport, d.port)
        self.assertRegex(d.log(), r"worker %d: ready at 127\.0\.0\.1:%d .*\(reported ready\)"
                         % (body["pid"], wport))
        self.assert_peer_info_matches(body, mine, peer, d.port)
        self.assertRegex(body["key"], r"^127\.0\.0\.1:\d+$")
        # A connection the master did not relay (straight to the worker) is unknown.
        direct = get_json(wport, timeout=10)[0]
        self.assertIsNone(direct["info"])
        self.stop_daemon(d)

    def test_agent_backend_worker_on_ipv6_loopback_reports_its_address(self):
        self.worker_on_ipv6_reports_its_address()

    def test_unix_backend_worker_reports_ready_and_gets_peer_info(self):
        d = self.start_daemon([self.worker_service("unix", worker_count=1)])
        body, mine, peer = get_json(d.port, timeout=20)
        self.assertRegex(body["key"], r"^@sn-[0-9a-f]+-[0-9a-f]+-[0-9a-f]{16}$")
        self.assert_peer_info_matches(body, mine, peer, d.port)
        # Its report and the master's probe race (a probe every 50 ms at most): either one
        # makes a unix-backend worker ready.
        self.assertRegex(d.log(), r"worker %d: ready at unix:.* \((reported ready|accepts "
                         r"connections)\)" % body["pid"])
        self.stop_daemon(d)

    def test_tcp_backend_worker_gets_peer_info(self):
        body = self.tcp_backend_gets_peer_info()
        self.assertRegex(body["key"], r"^127\.0\.0\.1:\d+$")

    def test_agent_is_a_noop_without_a_control_channel(self):
        d = self.start_daemon([self.worker_service("unix", worker_count=1, control=False)])
        body = get_json(d.port, path="/?log=never-forwarded", timeout=20)[0]
        self.assertFalse(body["enabled"])
        self.assertIsNone(body["info"])
        self.stop_daemon(d)
        self.assertNotIn("never-forwarded", d.log())
        env = harness.daemon_env()
        env.pop("SOCKETNAUT_CONTROL_FD", None)
        code = ("import sys; sys.path.insert(0, %r)\n"
                "from socketnaut_agent import ServiceAgent\n"
                "a = ServiceAgent()\n"
                "print(a.enabled, a.ready(port=1), a.log('x'), a.drained(), a.peer_info(1234))\n"
                % AGENT_DIR)
        out = subprocess.run([harness.PYTHON, "-c", code], env=env, capture_output=True,
                             timeout=20)
        self.assertEqual(out.stdout.decode().split(), ["False"] * 4 + ["None"], out.stderr)

    # peer info -----------------------------------------------------------------------------

    def test_concurrent_clients_over_ipv4_and_ipv6_agent_backend(self):
        self.concurrent_clients("agent")

    def test_concurrent_clients_over_ipv4_and_ipv6_unix_backend(self):
        results = self.concurrent_clients("unix")
        keys = [body["key"] for body, _, _ in results]
        self.assertEqual(len(set(keys)), len(keys), "two connections had the same key")

    def test_concurrent_clients_over_ipv4_and_ipv6_asyncio_worker(self):
        self.concurrent_clients("asyncio")

    def query_at_accept_time(self, backend, count=300, parallel=16):
        """A worker that asks for peer info as soon as it accepts, before the client sends
        anything (as a server-speaks-first protocol would): every answer must be known."""
        worker = self.write_file("accept_worker.py", (
            "import os, socket, sys, threading\n"
            "sys.path.insert(0, %r)\n"
            "from socketnaut_agent import ServiceAgent\n"
            "agent = ServiceAgent()\n"
            "if sys.argv[1] == 'agent':\n"
            "    s = socket.socket()\n"
            "    s.bind(('127.0.0.1', 0))\n"
            "else:\n"
            "    s = socket.socket(socket.AF_UNIX)\n"
            "    s.bind(os.environ['SOCKETNAUT_SOCKET'])\n"
            "s.listen(512)\n"
            "agent.ready(port=s.getsockname()[1]) if sys.argv[1] == 'agent' else agent.ready()\n"
            "def serve(c):\n"
            "    info = agent.peer_info(c)\n"
            "    c.sendall(('%%s %%d\\n' %% (info['remote']['address'], info['remote']['port'])\n"
            "               if info else 'unknown\\n').encode())\n"
            "    c.close()\n"
            "while True:\n"
            "    c, _ = s.accept()\n"
            "    threading.Thread(target=serve, args=(c,), daemon=True).start()\n") % AGENT_DIR)
        d = self.start_daemon([{"name": "acc", "command": [harness.PYTHON, worker, backend],
                                "backend": backend, "worker_count": 1}])
        def one(_):
            with harness.connect(d.port, timeout=10) as c:
                mine = c.getsockname()
                data = b""
                for _ in range(100):
                    chunk = c.recv(100)
                    if not chunk:
                        break
                    data += chunk
            return data.decode().strip(), "%s %d" % mine[:2]

        with concurrent.futures.ThreadPoolExecutor(parallel) as ex:
            answers = list(ex.map(one, range(count), timeout=60))
        wrong = [(got, want) for got, want in answers if got != want]
        self.assertEqual(wrong[:5], [], "%d of %d answers wrong" % (len(wrong), count))
        self.stop_daemon(d)

    def test_query_at_accept_time_unix_backend(self):
        self.query_at_accept_time("unix")

    def test_query_at_accept_time_tcp_backend(self):
        # The master must index the relay when it connects, not when the connect completes.
        self.query_at_accept_time("agent")

    # logs --------------------------------------------------------------------------------

    def test_logs_are_forwarded_tagged_with_service_and_worker_pid(self):
        # Numeric levels too ("2" = crit): never above "error" in the daemon's log.
        self.logs_are_forwarded("py", "python", info="info", warn="warning", crit="2")

    # drain -------------------------------------------------------------------------------

    def test_drain_on_reload_worker_exits_by_itself(self):
        self.drain_on_reload("agent")

    def test_drain_on_reload_unix_backend(self):
        self.drain_on_reload("unix")

    def test_drain_on_reload_asyncio_worker(self):
        self.drain_on_reload("asyncio")

    def test_drain_on_scale_down_worker_exits_by_itself(self):
        self.drain_on_scale_down("agent")

    # WSGI --------------------------------------------------------------------------------

    def test_gunicorn_wsgi_app_gets_peer_info_and_stops_on_drain(self):
        if not os.access("/usr/bin/gunicorn", os.X_OK):
            self.skipTest("/usr/bin/gunicorn is not installed (apt-get install gunicorn)")
        self.write_file("app/app.py", (
            "import json, os, signal, sys\n"
            "sys.path.insert(0, %r)\n"
            "from socketnaut_agent import ServiceAgent\n"
            "agent = ServiceAgent()\n"
            "agent.ready()\n"
            "def stop_arbiter():\n"
            "    agent.log('drain: stopping the gunicorn arbiter')\n"
            "    os.kill(os.getppid(), signal.SIGTERM)\n"
            "agent.on_drain(stop_arbiter, send_drained=False)\n"
            "def app(environ, start_response):\n"
            "    info = agent.peer_info(environ)\n"
            "    agent.log('wsgi request from %%s' %% (info and info['remote']['port']))\n"
            "    body = json.dumps({'pid': os.getpid(), 'info': info}).encode()\n"
            "    start_response('200 OK', [('Content-Type', 'application/json'),\n"
            "                              ('Content-Length', str(len(body)))])\n"
            "    return [body]\n") % AGENT_DIR)
        d = self.start_daemon([{
            "name": "wsgi", "worker_count": 1, "directory": self.path("app"),
            "ready_timeout": "20s", "kill_timeout": "15s",
            "command": "/usr/bin/gunicorn --bind unix:{socket} --workers 1 app:app"}])
        body, mine, peer = get_json(d.port, timeout=30)
        self.assert_peer_info_matches(body, mine, peer, d.port)
        self.wait_log(d, r"service wsgi: worker \d+: wsgi request from %d$" % mine[1])
        (arbiter,) = d.workers()
        d.proc.send_signal(signal.SIGHUP)
        # gunicorn takes seconds to stop on a loaded machine: kill_timeout is generous.
        self.wait_log(d, r"service wsgi: worker %d: (exited|killed)" % arbiter, 40)
        self.assertRegex(d.log(), r"service wsgi: worker %d: drain: stopping the gunicorn "
                         r"arbiter" % arbiter)
        self.assertRegex(d.log(), r"service wsgi: worker %d: exited with status 0" % arbiter)
        self.assertNotRegex(d.log(), r"worker %d: still running" % arbiter)
        self.stop_daemon(d)

    # examples ----------------------------------------------------------------------------

    def example_service(self, conf, name, **kw):
        """The service of an example .conf, on a free port, run from the top of the tree."""
        rc, out, err = harness.run_check(os.path.join(EXAMPLES, conf))
        self.assertEqual(rc, 0, err)
        with open(os.path.join(EXAMPLES, conf)) as f:
            text = f.read()
        svc = {"name": name, "directory": harness.ROOT}
        for key in ("command", "backend"):
            m = re.search(r'^\s*%s\s*=\s*"([^"]*)"' % key, text, re.M)
            if m:
                svc[key] = m.group(1)
        svc["command"] = svc["command"].replace("python3 ", harness.PYTHON + " ", 1)
        svc.update(kw)
        return svc

    def test_example_python_hello_logs_real_client_address(self):
        port, listen, hosts = self.dual_stack_listen()
        svc = self.example_service("python-hello/python-hello.conf", "python-hello",
                                   listen=listen, worker_count=1)
        d = self.start_daemon([svc], wait=False)
        for host in hosts:
            d.wait_listening(port, host=host)
        for host in hosts:
            with harness.Conn(port, host, timeout=20) as c:
                mine = c.sock.getsockname()
                r = c.request("GET", "/hello")
            self.assertEqual(r.status, 200)
            self.assertIn("client %s port %d" % (mine[0], mine[1]), r.text)
            self.wait_log(d, r"service python-hello: worker \d+: GET /hello from %s port %d via "
                          r"%s port %d$" % (re.escape(mine[0]), mine[1], re.escape(host), port))
        self.stop_daemon(d)

    def test_example_redirect_answers_301_to_https(self):
        svc = self.example_service("redirect/redirect.conf", "redirect", worker_count=1)
        d = self.start_daemon([svc])
        with harness.Conn(d.port, timeout=20) as c:
            mine = c.sock.getsockname()
            c.send(b"GET /some/path?q=1 HTTP/1.1\r\nHost: example.org:8082\r\n"
                   b"Connection: close\r\n\r\n")
            r = c.read_response()
        self.assertEqual(r.status, 301)
        self.assertEqual(r.headers["location"], "https://example.org/some/path?q=1")
        self.wait_log(d, r"service redirect: worker \d+: redirect GET /some/path\?q=1 from "
                      r"127\.0\.0\.1 port %d to https://example\.org/some/path\?q=1$" % mine[1])
        with harness.Conn(d.port, timeout=20) as c:
            c.send(b"HEAD / HTTP/1.1\r\nHost: [::1]:8082\r\nConnection: close\r\n\r\n")
            r = c.read_response("HEAD")
        self.assertEqual((r.status, r.headers["location"]), (301, "https://[::1]/"))
        self.stop_daemon(d)


if __name__ == "__main__":
    unittest.main()
