"""Requests reach workers through every way a worker can be addressed, and the worker
environment carries what the spec promises."""

import os
import unittest

import harness
from harness import http_ok


class BackendTest(harness.DaemonTest):

    def assert_hello_served_by_a_worker(self, d, index=0):
        r = http_ok(self, d.port, "/")
        got_index, pid = harness.hello_identity(r.body)
        self.assertEqual(got_index, index)
        self.assertIn(pid, d.workers(), "the answering pid is not a worker of the daemon")
        body = os.urandom(3000)
        self.assertEqual(http_ok(self, d.port, "/echo", "POST", body).body, body)
        return pid

    def test_unix_backend_with_socket_placeholder_serves_requests(self):
        d = self.start_daemon([harness.hello(worker_count=1)])
        self.assert_hello_served_by_a_worker(d)
        self.stop_daemon(d)

    def test_socket_activation_worker_gets_listening_fd_3_and_serves_requests(self):
        d = self.start_daemon([{"name": "act", "command": "socketnaut-hello",
                                "socket_activation": True, "worker_count": 1}])
        pid = self.assert_hello_served_by_a_worker(d)
        self.assertEqual(http_ok(self, d.port, "/env?name=LISTEN_FDS").text.strip(), "1")
        self.assertEqual(http_ok(self, d.port, "/env?name=LISTEN_PID").text.strip(), str(pid))
        self.assertEqual(http_ok(self, d.port, "/env?name=LISTEN_FDNAMES").text.strip(), "act")
        self.stop_daemon(d)

    def test_tcp_backend_with_port_placeholder_serves_requests(self):
        d = self.start_daemon([{"name": "tcp", "command": "socketnaut-hello --port {port}",
                                "backend": "tcp", "worker_count": 1}])
        pid = self.assert_hello_served_by_a_worker(d)
        port = int(http_ok(self, d.port, "/env?name=PORT").text.strip())
        self.assertNotEqual(port, d.port)
        self.assertTrue(harness.port_open(port), "worker not listening on 127.0.0.1:$PORT")
        self.assertEqual(http_ok(self, port, "/pid").text.strip(), str(pid))
        self.stop_daemon(d)

    def test_tcp_backend_runs_python_http_server_serving_a_file(self):
        content = os.urandom(20000).hex().encode()
        self.write_file("files/hello.txt", content)
        d = self.start_daemon([{
            "name": "files", "backend": "tcp", "worker_count": 1,
            "command": harness.PYTHON + " -m http.server {port} --bind 127.0.0.1",
            "directory": self.path("files")}])
        r = http_ok(self, d.port, "/hello.txt", timeout=15)
        self.assertEqual(r.body, content)
        self.assertEqual(len(d.workers()), 1)
        r = harness.http(d.port, path="/missing.txt")
        self.assertEqual(r.status, 404)
        self.stop_daemon(d)

    def test_unix_backend_runs_gunicorn_wsgi_app(self):
        if not os.access("/usr/bin/gunicorn", os.X_OK):
            self.skipTest("/usr/bin/gunicorn is not installed (apt-get install gunicorn)")
        self.write_file("app/app.py",
                        "import os\n"
                        "def app(environ, start_response):\n"
                        "    body = ('gunicorn pid %d path %s cwd %s' % (os.getpid(),\n"
                        "            environ['PATH_INFO'], os.getcwd())).encode()\n"
                        "    start_response('200 OK', [('Content-Type', 'text/plain'),\n"
                        "                              ('Content-Length', str(len(body)))])\n"
                        "    return [body]\n")
        d = self.start_daemon([{
            "name": "wsgi", "worker_count": 1, "directory": self.path("app"),
            "command": "/usr/bin/gunicorn --bind unix:{socket} --workers 1 app:app"}])
        r = http_ok(self, d.port, "/some/path", timeout=20)
        words = r.text.split()
        self.assertEqual(words[:2], ["gunicorn", "pid"], r.text)
        self.assertIn(int(words[2]), harness.descendants(d.pid),
                      "the gunicorn process answering is not under the daemon")
        self.assertEqual(words[4], "/some/path")
        self.assertEqual(os.path.realpath(words[6]), os.path.realpath(self.path("app")))
        self.stop_daemon(d)

    def test_worker_environment_has_service_index_socket_and_env_additions(self):
        d = self.start_daemon(
            [harness.hello(name="envsvc", worker_count=1,
                           env=["SN_TEST_ADDED=added value", "SN_TEST_OVERRIDE=from config"])],
            env={"SN_TEST_INHERITED": "from master", "SN_TEST_OVERRIDE": "from master"})

        def env(name):
            return http_ok(self, d.port, "/env?name=" + name).text.rstrip("\n")

        self.assertEqual(env("SOCKETNAUT_SERVICE"), "envsvc")
        self.assertEqual(env("SOCKETNAUT_WORKER"), "0")
        self.assertTrue(env("SOCKETNAUT_SOCKET").startswith(d.runtime_dir + "/"),
                        env("SOCKETNAUT_SOCKET"))
        self.assertEqual(env("SN_TEST_ADDED"), "added value")
        self.assertEqual(env("SN_TEST_INHERITED"), "from master")
        self.assertEqual(env("SN_TEST_OVERRIDE"), "from config", "env additions must win")
        r = harness.http(d.port, path="/env?name=SN_TEST_NOT_SET")
        self.assertEqual(r.status, 404)
        self.stop_daemon(d)


if __name__ == "__main__":
    unittest.main()
