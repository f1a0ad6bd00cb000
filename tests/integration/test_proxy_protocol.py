"""proxy_protocol: stock servers that read a PROXY header (gunicorn, nginx, HAProxy) learn the
true client address through socketnautd; the header comes first on every worker connection,
again on the next worker when a client is moved; health checks send one too."""

import os
import shutil
import signal
import socket
import threading
import time
import unittest

import harness

NGINX = "/usr/sbin/nginx"
HAPROXY = "/usr/sbin/haproxy"
GUNICORN = "/usr/bin/gunicorn"

# A raw worker: answers each connection with what it read up to the end of the request head.
ECHO_WORKER = r"""
import os, socket, sys
path = os.environ["SOCKETNAUT_SOCKET"]
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(64)
while True:
    c, _ = s.accept()
    data = b""
    while not (b" HTTP/1.1\r\n" in data and data.endswith(b"\r\n\r\n")) and len(data) < 65536:
        d = c.recv(65536)
        if not d:
            break
        data += d
    body = data.hex().encode()
    try:
        c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body)
    except OSError:
        pass  # the master's readiness test connects and closes
    c.close()
"""

# A server that speaks first, as SMTP does, after it has read the PROXY v1 line.
GREETER_WORKER = r"""
import os, socket
path = os.environ["SOCKETNAUT_SOCKET"]
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(64)
while True:
    c, _ = s.accept()
    data = b""
    while b"\r\n" not in data and len(data) < 200:
        d = c.recv(1)
        if not d:
            break
        data += d
    try:
        c.sendall(b"220 hello " + data.split(b" ")[2] + b"\r\n")
    except (OSError, IndexError):
        pass  # the master's readiness test connects and closes
    c.close()
"""

# Reads the PROXY v1 line, then answers keep-alive requests, a thread per connection.
KEEPALIVE_WORKER = r"""
import os, socket, threading
path = os.environ["SOCKETNAUT_SOCKET"]
if os.path.exists(path):
    os.unlink(path)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(256)
def serve(c):
    data = b""
    try:
        while b"\r\n" not in data:
            d = c.recv(4096)
            if not d:
                return
            data += d
        data = data.split(b"\r\n", 1)[1]
        while True:
            while b"\r\n\r\n" not in data:
                d = c.recv(4096)
                if not d:
                    return
                data += d
            data = data.split(b"\r\n\r\n", 1)[1]
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# Accepts its first client before it creates its agent, then answers every client with its
# peer-info key and the address the master reports.
LATE_AGENT_WORKER = r"""
import os, socket, sys
sys.path.insert(0, %r)
import socketnaut_agent
path = os.environ["SOCKETNAUT_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(64)
agent = None
while True:
    c, _ = s.accept()
    data = b""
    while not data.endswith(b"\r\n\r\n") and len(data) < 65536:
        d = c.recv(65536)
        if not d:
            break
        data += d
    if not data:
        c.close()  # the master's readiness test
        continue
    if agent is None:
        agent = socketnaut_agent.ServiceAgent()
    info = agent.peer_info(c, timeout=5)
    body = ("%%s %%s:%%d" %% (socketnaut_agent.connection_key(c), info["remote"]["address"],
                           info["remote"]["port"])).encode()
    c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %%d\r\n\r\n"
              %% len(body) + body)
    c.close()
"""


def client_from(src, port, path="/", dst="127.0.0.1", timeout=15):
    """One GET from source address src (bound before connecting): (response, source port)."""
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    sport = s.getsockname()[1]
    s.connect((dst, port))
    with harness.Conn(port, sock=s, timeout=timeout) as c:
        return c.request("GET", path), sport


def read_when(path, predicate, timeout=15):
    """The file's text once predicate(text) holds (bounded wait)."""
    box = {}

    def check():
        try:
            with open(path, errors="replace") as f:
                box["text"] = f.read()
        except FileNotFoundError:
            return False
        return predicate(box["text"])

    harness.wait_until(check, timeout, what="%s to show the expected lines" % path)
    return box["text"]


class ProxyProtocolTest(harness.DaemonTest):

    def template_worker(self, name, text, run):
        """A command that writes this worker's config from text (SOCK: its socket, IDX: its
        index), then runs `run` followed by the config's path."""
        tpl = self.write_file(name + ".tpl", text)
        conf = "%s-$SOCKETNAUT_WORKER.conf" % self.path(name)
        return ("/bin/sh -c 'sed \"s|SOCK|$SOCKETNAUT_SOCKET|g; s|IDX|$SOCKETNAUT_WORKER|g\" %s"
                " > %s && exec %s %s'" % (tpl, conf, run, conf))

    def test_gunicorn_v1_sees_the_client_address_and_port_and_takes_health_checks(self):
        if not os.access(GUNICORN, os.X_OK):
            self.skipTest("gunicorn is not installed")
        # The check's answer has no body: the check hangs up once it has the status, and
        # gunicorn logs no access line for a request whose body it could not write.
        self.write_file("app/app.py",
                        "def app(environ, start_response):\n"
                        "    body = ('%s %s' % (environ['REMOTE_ADDR'],\n"
                        "                       environ.get('REMOTE_PORT'))).encode()\n"
                        "    if environ['PATH_INFO'] == '/health':\n"
                        "        body = b''\n"
                        "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
                        "    return [body]\n")
        access = self.path("access.log")
        d = self.start_daemon([{
            "name": "wsgi", "worker_count": 1, "directory": self.path("app"),
            "proxy_protocol": harness.Raw("v1"),
            "health_check": {"type": "http", "path": "/health", "interval": "300ms",
                             "timeout": "300ms"},
            "command": GUNICORN + " --bind unix:{socket} --workers 1 --proxy-protocol"
                       " --proxy-allow-from * --access-logfile " + access +
                       " --access-logformat '%(h)s %(a)s' app:app"}])
        harness.wait_until(lambda: harness.port_open(d.port), 20, what="service port")
        for src in ("127.0.0.2", "127.0.0.3"):
            r, sport = client_from(src, d.port, timeout=20)
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.text, "%s %d" % (src, sport))
        text = read_when(access, lambda t: "127.0.0.3 " in t and "health-check" in t)
        self.assertTrue(text.startswith("127.0.0."), repr(text[:80]))
        self.assertNotIn("\0", text)
        self.assertIn("127.0.0.1 socketnautd-health-check", text)
        self.assertNotIn("unhealthy", d.log())
        self.stop_daemon(d)

    def test_plain_gunicorn_sees_an_unnamed_peer_never_a_nul_byte(self):
        # control is on by default, but gunicorn never speaks on the channel: the master
        # leaves its end unnamed (only agents, which say hello, get "@sn-PID-N" names).
        if not os.access(GUNICORN, os.X_OK):
            self.skipTest("gunicorn is not installed")
        self.write_file("app/app.py",
                        "def app(environ, start_response):\n"
                        "    body = repr(environ['REMOTE_ADDR']).encode()\n"
                        "    start_response('200 OK', [('Content-Length', str(len(body)))])\n"
                        "    return [body]\n")
        access = self.path("access.log")
        d = self.start_daemon([{
            "name": "wsgi", "worker_count": 1, "directory": self.path("app"),
            "command": GUNICORN + " --bind unix:{socket} --workers 1 --access-logfile " +
                       access + " app:app"}])
        harness.wait_until(lambda: harness.port_open(d.port), 20, what="service port")
        r = harness.http_ok(self, d.port, timeout=20)
        self.assertEqual(r.text, "''")
        text = read_when(access, lambda t: "GET /" in t)
        self.assertNotIn("\0", text)
        self.stop_daemon(d)

    def test_agent_that_starts_after_its_first_client_still_gets_its_peer_info(self):
        # As gunicorn's workers do: the server listens before the app creates its agent.
        # The first connection is unnamed (no hello yet): the agent asks by its inode.
        script = self.write_file("late.py", LATE_AGENT_WORKER % os.path.join(
            harness.ROOT, "agents", "python"))
        d = self.start_daemon([{"name": "late", "worker_count": 1,
                                "command": harness.PYTHON + " " + script}])
        d.wait_ready(1)
        for src in ("127.0.0.2", "127.0.0.3"):
            r, sport = client_from(src, d.port)
            self.assertEqual(r.status, 200, r.body)
            key, addr = r.text.split()
            self.assertEqual(addr, "%s:%d" % (src, sport))
            self.assertTrue(key.startswith("ino:" if src == "127.0.0.2" else "@sn-"), key)
        self.stop_daemon(d)

    def nginx_worker(self, version):
        if not os.access(NGINX, os.X_OK):
            self.skipTest("nginx is not installed")
        os.makedirs(self.path("nginx"), exist_ok=True)
        conf = ("daemon off;\nmaster_process off;\nworker_processes 1;\n"
                "pid %(d)s/nginx-IDX.pid;\nerror_log %(d)s/error-IDX.log info;\n"
                "events { worker_connections 64; }\n"
                "http {\n"
                "  client_body_temp_path %(d)s/body; proxy_temp_path %(d)s/proxy;\n"
                "  fastcgi_temp_path %(d)s/fcgi; uwsgi_temp_path %(d)s/uwsgi;\n"
                "  scgi_temp_path %(d)s/scgi;\n"
                "  log_format pp '$proxy_protocol_addr $proxy_protocol_port $remote_addr';\n"
                "  server {\n"
                "    listen unix:SOCK proxy_protocol;\n"
                "    access_log %(d)s/access.log pp;\n"
                "    location / { return 200 '$proxy_protocol_addr $proxy_protocol_port'; }\n"
                "  }\n}\n" % {"d": self.path("nginx")})
        cmd = self.template_worker("nginx", conf, "%s -e stderr -p %s -c"
                                   % (NGINX, self.path("nginx")))
        return {"name": "ng" + version, "worker_count": 1,
                "proxy_protocol": harness.Raw(version),
                "health_check": {"type": "http", "path": "/", "interval": "300ms",
                                 "timeout": "300ms"},
                "command": cmd}

    def check_nginx(self, version):
        d = self.start_daemon([self.nginx_worker(version)])
        harness.wait_until(lambda: harness.port_open(d.port), 20, what="service port")
        seen = []
        for src in ("127.0.0.2", "127.0.0.3"):
            r, sport = client_from(src, d.port)
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.text, "%s %d" % (src, sport))
            seen.append("%s %d" % (src, sport))
        text = read_when(self.path("nginx", "access.log"),
                         lambda t: all(s in t for s in seen))
        self.assertNotIn("\0", text)
        errors = open(self.path("nginx", "error-0.log"), errors="replace").read()
        self.assertNotIn("broken header", errors)
        self.assertNotIn("unhealthy", d.log())
        if harness.ipv6_available():
            self.stop_daemon(d)
            svc = self.nginx_worker(version)
            port = harness.free_port(socket.AF_INET6)
            svc["listen"] = ["[::1]:%d" % port]
            d = self.start_daemon([svc], wait=False)
            harness.wait_until(lambda: harness.port_open(port, "::1"), 20, what="[::1] port")
            r, sport = client_from("::1", port, dst="::1")
            self.assertEqual(r.text, "::1 %d" % sport)
        self.stop_daemon(d)

    def test_nginx_v1_logs_the_client_address(self):
        self.check_nginx("v1")

    def test_nginx_v2_logs_the_client_address(self):
        self.check_nginx("v2")

    def test_haproxy_accept_proxy_worker_sees_the_client_in_ci(self):
        if not os.access(HAPROXY, os.X_OK):
            self.skipTest("haproxy is not installed")
        conf = ("global\n  log stdout format raw local0\n"
                "defaults\n  mode http\n  log global\n"
                "  timeout client 10s\n  timeout server 10s\n  timeout connect 5s\n"
                "  log-format \"ci=%ci:%cp\"\n"
                "frontend fe\n  bind unix@SOCK accept-proxy\n"
                "  http-request return status 200 content-type text/plain"
                " lf-string \"%ci %cp\"\n")
        cmd = self.template_worker("haproxy", conf, HAPROXY + " -db -f")
        d = self.start_daemon([{"name": "hap", "worker_count": 1,
                                "proxy_protocol": harness.Raw("v2"),
                                "command": cmd}])
        harness.wait_until(lambda: harness.port_open(d.port), 20, what="service port")
        for src in ("127.0.0.2", "127.0.0.3"):
            r, sport = client_from(src, d.port)
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.text, "%s %d" % (src, sport))
        harness.wait_until(lambda: "ci=127.0.0.3:" in d.log(), 10, what="haproxy's log line")
        self.stop_daemon(d)

    def test_header_comes_once_per_worker_connection_also_after_a_move(self):
        script = self.write_file("echo.py", ECHO_WORKER)
        d = self.start_daemon([{"name": "echo", "worker_count": 2, "stall_timeout": "1s",
                                "proxy_protocol": harness.Raw("v1"),
                                "command": harness.PYTHON + " " + script}])
        pids = d.wait_ready(2)
        for src in ("127.0.0.2", "127.0.0.3"):
            r, sport = client_from(src, d.port)
            got = bytes.fromhex(r.text)
            want = ("PROXY TCP4 %s 127.0.0.1 %d %d\r\nGET / HTTP/1.1\r\n"
                    % (src, sport, d.port)).encode()
            self.assertTrue(got.startswith(want), got)
        # A stopped worker's clients move to the other: it gets one header, then the request.
        os.kill(pids[0], signal.SIGSTOP)
        self.addCleanup(lambda: os.kill(pids[0], signal.SIGCONT)
                        if harness.proc_alive(pids[0]) else None)
        results = [None] * 4

        def client(i):
            try:
                results[i] = client_from("127.0.0.2", d.port, timeout=20)
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = e

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.02)
        for t in threads:
            t.join(30)
        for res in results:
            self.assertIsInstance(res, tuple, res)
            r, sport = res
            got = bytes.fromhex(r.text)
            self.assertTrue(got.startswith(b"PROXY TCP4 127.0.0.2 127.0.0.1 %d %d\r\nGET /"
                                           % (sport, d.port)), got)
            self.assertEqual(got.count(b"PROXY "), 1, got)
        harness.wait_until(lambda: "stalled" in d.log(), 10, what="the stall to be logged")
        self.stop_daemon(d)

    def test_a_client_that_waits_for_the_server_gets_the_header_sent_alone(self):
        # Mostly the header leaves with the client's first bytes in one send; a client that
        # says nothing (the server speaks first) must not leave the worker waiting for it.
        script = self.write_file("greeter.py", GREETER_WORKER)
        d = self.start_daemon([{"name": "smtp", "worker_count": 1,
                                "proxy_protocol": harness.Raw("v1"),
                                "command": harness.PYTHON + " " + script}])
        d.wait_ready(1)
        s = socket.socket()
        s.settimeout(10)
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", d.port))
        self.assertEqual(s.recv(100), b"220 hello 127.0.0.2\r\n")
        s.close()
        self.stop_daemon(d)

    def test_idle_keepalive_clients_cost_no_cpu_after_their_header(self):
        # The header waits up to 20 ms for the client's bytes on a short timer; once it went,
        # an idle client must be back on the idle timeout, not woken every 20 ms.
        script = self.write_file("keepalive.py", KEEPALIVE_WORKER)
        d = self.start_daemon([{"name": "ka", "worker_count": 1,
                                "proxy_protocol": harness.Raw("v1"),
                                "command": harness.PYTHON + " " + script}])
        d.wait_ready(1)
        conns = []
        for _ in range(400):
            c = harness.Conn(d.port)
            self.assertEqual(c.request("GET", "/", keepalive=True).status, 200)
            conns.append(c)
        try:
            before = harness.cpu_seconds(d.pid)
            time.sleep(3.0)
            used = harness.cpu_seconds(d.pid) - before
            # woken every 20 ms, they would cost it some 0.2 s
            self.assertLess(used, 0.06, "400 idle clients cost the master %.3f s of CPU in 3 s"
                            % used)
        finally:
            for c in conns:
                c.close()
        self.stop_daemon(d)

    def test_v2_header_carries_addresses_and_a_unique_id_per_connection(self):
        script = self.write_file("echo.py", ECHO_WORKER)
        d = self.start_daemon([{"name": "echo", "worker_count": 1,
                                "proxy_protocol": harness.Raw("v2"),
                                "command": harness.PYTHON + " " + script}])
        d.wait_ready(1)
        ids = set()
        for src in ("127.0.0.2", "127.0.0.3"):
            r, sport = client_from(src, d.port)
            got = bytes.fromhex(r.text)
            self.assertEqual(got[:13], b"\r\n\r\n\0\r\nQUIT\n\x21")
            self.assertEqual(got[13], 0x11)
            length = int.from_bytes(got[14:16], "big")
            self.assertEqual(got[16:20], socket.inet_aton(src))
            self.assertEqual(got[20:24], socket.inet_aton("127.0.0.1"))
            self.assertEqual(int.from_bytes(got[24:26], "big"), sport)
            self.assertEqual(int.from_bytes(got[26:28], "big"), d.port)
            self.assertEqual(got[28], 0x05)  # PP2_TYPE_UNIQUE_ID
            idlen = int.from_bytes(got[29:31], "big")
            self.assertEqual(length, 12 + 3 + idlen)
            ids.add(got[31:31 + idlen])
            self.assertTrue(got[16 + length:].startswith(b"GET / HTTP/1.1\r\n"))
        self.assertEqual(len(ids), 2, ids)
        self.stop_daemon(d)


if __name__ == "__main__":
    unittest.main()
