"""accept_proxy: a PROXY header from a trusted load balancer names the client everywhere the
daemon gives one (agent peer info, the header to workers, log lines); untrusted sources,
malformed, oversized and slow headers are closed, counted and logged without harming others."""

import os
import socket
import struct
import time
import unittest

import harness
from test_proxy_protocol import ECHO_WORKER

SIG = b"\r\n\r\n\0\r\nQUIT\n"
GET = harness.build_request("GET", "/hello")


def v2(src, dst, sport, dport, command=0x21):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return SIG + bytes([command, 0x11]) + struct.pack("!H", len(body)) + body


def exchange(port, chunks, src="127.0.0.1", timeout=15, pause=0.0):
    """Send chunks (with a pause between them) from src, then read until EOF: the bytes."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    try:
        for c in chunks:
            s.sendall(c)
            if pause:
                time.sleep(pause)
        data = b""
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            data += d
        return data
    finally:
        s.close()


def body_of(data):
    return data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""


class AcceptProxyTest(harness.DaemonTest):

    def echo_service(self, **kw):
        script = self.write_file("echo.py", ECHO_WORKER)
        svc = {"name": "lb", "worker_count": 1, "proxy_protocol": harness.Raw("v1"),
               "accept_proxy": harness.Raw("any"), "trusted_proxies": ["127.0.0.1/32"],
               "proxy_timeout": harness.Raw("1s"), "command": harness.PYTHON + " " + script}
        svc.update(kw)
        return svc

    def worker_saw(self, data):
        return bytes.fromhex(body_of(data).decode())

    def test_v1_and_v2_from_a_trusted_balancer_reach_the_worker_as_the_client(self):
        d = self.start_daemon([self.echo_service()])
        d.wait_ready(1)
        got = self.worker_saw(exchange(d.port, [
            b"PROXY TCP4 203.0.113.7 198.51.100.1 4242 80\r\n" + GET]))
        self.assertTrue(got.startswith(
            b"PROXY TCP4 203.0.113.7 198.51.100.1 4242 80\r\nGET /hello HTTP/1.1\r\n"), got)
        got = self.worker_saw(exchange(d.port, [v2("192.0.2.9", "198.51.100.2", 5353, 443)
                                                + GET]))
        self.assertTrue(got.startswith(b"PROXY TCP4 192.0.2.9 198.51.100.2 5353 443\r\nGET /"),
                        got)
        # v2 LOCAL (the balancer's own check): the real peer.
        got = self.worker_saw(exchange(d.port, [SIG + b"\x20\x00\x00\x00" + GET]))
        self.assertTrue(got.startswith(b"PROXY TCP4 127.0.0.1 127.0.0.1 "), got)
        self.stop_daemon(d)

    def test_ipv6_balancer_and_ipv6_client_in_a_v2_header(self):
        if not harness.ipv6_available():
            self.skipTest("no IPv6 loopback")
        port = harness.free_port(socket.AF_INET6)
        d = self.start_daemon([self.echo_service(listen=["[::1]:%d" % port],
                                                 trusted_proxies=["::1/128"])], wait=False)
        harness.wait_until(lambda: harness.port_open(port, "::1"), 20, what="[::1] port")
        d.wait_ready(1)
        src, dst = socket.inet_pton(socket.AF_INET6, "2001:db8::5"), \
            socket.inet_pton(socket.AF_INET6, "2001:db8::1")
        body = src + dst + struct.pack("!HH", 40000, 443)
        hdr = SIG + b"\x21\x21" + struct.pack("!H", len(body)) + body
        s = socket.create_connection(("::1", port), timeout=15)
        with harness.Conn(port, sock=s, timeout=15) as c:
            c.send(hdr + GET)
            got = bytes.fromhex(c.read_response().text)
        self.assertTrue(got.startswith(b"PROXY TCP6 2001:db8::5 2001:db8::1 40000 443\r\n"),
                        got)
        self.stop_daemon(d)

    def test_header_split_over_many_segments_works(self):
        d = self.start_daemon([self.echo_service()])
        d.wait_ready(1)
        line = b"PROXY TCP4 203.0.113.8 198.51.100.1 1111 80\r\n"
        got = self.worker_saw(exchange(d.port, [line[i:i + 3] for i in range(0, len(line), 3)]
                                       + [GET], pause=0.02))
        self.assertTrue(got.startswith(line + b"GET /hello"), got)
        hdr = v2("192.0.2.10", "198.51.100.2", 2222, 443)
        got = self.worker_saw(exchange(d.port, [hdr[i:i + 5] for i in range(0, len(hdr), 5)]
                                       + [GET], pause=0.02))
        self.assertTrue(got.startswith(b"PROXY TCP4 192.0.2.10 198.51.100.2 2222 443\r\n"), got)
        self.stop_daemon(d)

    def test_agent_peer_info_and_log_lines_give_the_headers_client(self):
        hello = os.path.join(harness.ROOT, "examples", "python-hello", "hello.py")
        d = self.start_daemon([{"name": "py", "worker_count": 1, "directory": harness.ROOT,
                                "command": harness.PYTHON + " " + hello,
                                "accept_proxy": harness.Raw("v2"),
                                "trusted_proxies": ["127.0.0.0/8"]}])
        d.wait_ready(1)
        data = exchange(d.port, [v2("203.0.113.50", "198.51.100.3", 6000, 8443) + GET])
        self.assertIn(b"client 203.0.113.50 port 6000", data)
        harness.wait_until(lambda: "GET /hello from 203.0.113.50 port 6000 via 198.51.100.3 "
                           "port 8443" in d.log(), 10, what="the agent's log line")
        self.stop_daemon(d)

    def test_untrusted_source_is_closed_and_logged(self):
        d = self.start_daemon([self.echo_service(trusted_proxies=["127.0.0.2", "::1/128"])])
        d.wait_ready(1)
        line = b"PROXY TCP4 203.0.113.7 198.51.100.1 4242 80\r\n"
        self.assertEqual(exchange(d.port, [line + GET], src="127.0.0.3"), b"")
        got = self.worker_saw(exchange(d.port, [line + GET], src="127.0.0.2"))
        self.assertTrue(got.startswith(line), got)
        self.assertIn("client 127.0.0.3:", d.log())
        self.assertIn("not in trusted_proxies, closed", d.log())
        self.stop_daemon(d)

    def test_malformed_oversized_and_slow_headers_are_closed_and_others_served(self):
        d = self.start_daemon([self.echo_service(accept_proxy=harness.Raw("v1"))])
        d.wait_ready(1)
        bad = [
            GET,                                                    # no header at all
            b"PROXY TCP4 203.0.113.7 198.51.100.1 4242 80\n" + GET,  # LF alone
            b"PROXY TCP4 203.0.113.07 198.51.100.1 4242 80\r\n" + GET,
            b"PROXY UNKNOWN " + b"x" * 200 + b"\r\n" + GET,        # past 107 bytes
            v2("192.0.2.1", "192.0.2.2", 1, 2) + GET,               # v2 where v1 is set
        ]
        for b in bad:
            self.assertEqual(exchange(d.port, [b]), b"", b)
        # Slow: half a header, then nothing; closed within proxy_timeout (1s), while
        # another client is served meanwhile.
        slow = socket.create_connection(("127.0.0.1", d.port), timeout=15)
        self.addCleanup(slow.close)
        slow.sendall(b"PROXY TCP4 203.0.113.7 ")
        start = time.monotonic()
        got = self.worker_saw(exchange(d.port, [
            b"PROXY TCP4 203.0.113.9 198.51.100.1 4242 80\r\n" + GET]))
        self.assertTrue(got.startswith(b"PROXY TCP4 203.0.113.9 "), got)
        try:
            self.assertEqual(slow.recv(100), b"")
        except ConnectionResetError:
            pass  # closed with its half header unread: a reset
        took = time.monotonic() - start
        self.assertLess(took, 8, "the slow header was not closed near proxy_timeout")
        harness.wait_until(lambda: "no complete PROXY header in time" in d.log(), 10,
                           what="the timeout's log line")
        self.assertTrue(d.alive())
        self.stop_daemon(d)

    def test_config_errors_name_their_lines(self):
        cases = [
            ('accept_proxy = v3\n', 4, "accept_proxy"),
            ('proxy_protocol = yes\n', 4, "proxy_protocol"),
            ('accept_proxy = any\n    trusted_proxies = { "10.0.0.0/33" }\n', 5, "10.0.0.0/33"),
            ('accept_proxy = any\n    trusted_proxies = { "10.0.0.1/8" }\n', 5, "10.0.0.1/8"),
            ('accept_proxy = any\n    trusted_proxies = { "example.com" }\n', 5,
             "example.com"),
            ('accept_proxy = v2\n', 4, "trusted_proxies"),
        ]
        for text, line, word in cases:
            conf = ('runtime_dir = "%s"\nservice "s" {\n    listen = { "127.0.0.1:%d" }\n    %s'
                    '    command = "socketnaut-hello --socket {socket}"\n}\n'
                    % (self.path("run"), harness.free_port(), text))
            path = self.write_file("t.conf", conf)
            rc, out, err = harness.run_check(path)
            self.assertEqual(rc, 1, err)
            found = [ln for ln in err.splitlines() if "t.conf:%d:" % line in ln and word in ln]
            self.assertTrue(found, "no t.conf:%d: with %r in:\n%s" % (line, word, err))
        ok = ('runtime_dir = "%s"\nservice "s" {\n    listen = { "127.0.0.1:%d" }\n'
              '    accept_proxy = any\n    trusted_proxies = { "10.0.0.0/8", "::1/128", '
              '"192.0.2.1" }\n    proxy_protocol = v2\n    proxy_timeout = 3s\n'
              '    command = "socketnaut-hello --socket {socket}"\n}\n'
              % (self.path("run"), harness.free_port()))
        rc, out, err = harness.run_check(self.write_file("ok.conf", ok))
        self.assertEqual(rc, 0, err)


if __name__ == "__main__":
    unittest.main()
