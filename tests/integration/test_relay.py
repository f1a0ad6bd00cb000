"""The byte relay: resets, half-close in both directions, idle timeout."""

import glob
import os
import socket
import struct
import threading
import time
import unittest

import harness

PATTERN = bytes(range(ord("a"), ord("z") + 1))


def pattern(n):
    return (PATTERN * (n // 26 + 1))[:n]


def read_until_eof(sock, deadline, limit=1 << 30):
    data = b""
    while len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no EOF before the deadline (%d bytes read)" % len(data))
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data


class RelayTest(harness.DaemonTest):

    def pyworker(self, *args, **opts):
        svc = {"name": "py", "command": [harness.PYTHON, harness.PYWORKER] + list(args),
               "worker_count": 1}
        svc.update(opts)
        return svc

    def test_client_reset_mid_download_leaves_daemon_serving_others(self):
        d = self.start_daemon([harness.hello(worker_count=2)], min_ready=2)
        other_result = []

        def other_download():
            try:
                r = harness.http(d.port, path="/bytes?n=5000000", timeout=30)
                other_result.append(r.body == pattern(5000000))
            except Exception as e:
                other_result.append(e)

        rst = harness.connect(d.port)
        rst.sendall(harness.build_request("GET", "/bytes?n=100000000"))
        got = 0
        deadline = time.monotonic() + 10
        while got < 1000000 and time.monotonic() < deadline:
            chunk = rst.recv(65536)
            self.assertTrue(chunk, "download ended early")
            got += len(chunk)
        other = threading.Thread(target=other_download, daemon=True)
        other.start()
        rst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rst.close()  # RST with unread data in flight

        other.join(40)
        self.assertEqual(other_result, [True], "the concurrent download failed")
        self.assertTrue(d.alive())
        # Both workers, the one whose client reset included, still answer: two connections
        # open at once go to the two workers (least connections).
        with harness.Conn(d.port) as c1, harness.Conn(d.port) as c2:
            pids = [int(c.request("GET", "/pid", keepalive=True).text) for c in (c1, c2)]
            self.assertEqual(sorted(pids), d.workers())
            for c in (c1, c2):
                self.assertEqual(c.request("GET", "/bytes?n=300000").body, pattern(300000))
        self.stop_daemon(d)

    def test_mixed_traffic_all_served_and_no_connection_left(self):
        # Each socket of a relay has one edge-triggered event: an edge the readiness
        # bookkeeping lost would hang a transfer.  Eight clients at once mix what a relay
        # meets (keep-alive, close, pipelining, half-close, uploads, large and slow
        # downloads); every one must complete and the daemon must count no connection after.
        d = self.start_daemon([harness.hello(worker_count=3)], min_ready=3)
        errors = []

        def keepalive(i):
            with harness.Conn(d.port, timeout=20) as c:
                for _ in range(30):
                    self.assertEqual(c.request("GET", "/", keepalive=True).status, 200)

        def close(i):
            for _ in range(30):
                self.assertEqual(harness.http(d.port, path="/pid", timeout=20).status, 200)

        def pipelined(i):
            with harness.Conn(d.port, timeout=20) as c:
                c.sock.sendall(b"".join(harness.build_request("GET", "/bytes?n=%d" % n,
                                                              keepalive=True)
                                        for n in (10, 70000, 5, 200000)))
                for n in (10, 70000, 5, 200000):
                    self.assertEqual(c.read_response().body, pattern(n))

        def half_close(i):
            s = harness.connect(d.port, timeout=20)
            try:
                s.sendall(harness.build_request("GET", "/bytes?n=300000"))
                s.shutdown(socket.SHUT_WR)
                data = read_until_eof(s, time.monotonic() + 20)
                self.assertTrue(data.endswith(pattern(300000)[-1000:]))
            finally:
                s.close()

        def upload(i):
            body = harness.random_bytes(400000 + i, i)
            self.assertEqual(harness.http(d.port, "POST", "/echo", body, timeout=20).body,
                             body)

        def slow_download(i):
            s = socket.socket()  # a small window, set before it is announced
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            s.settimeout(20)
            s.connect(("127.0.0.1", d.port))
            try:
                s.sendall(harness.build_request("GET", "/bytes?n=1500000"))
                got = 0
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += len(chunk)
                    if got % (64 * 4096) < 4096:
                        time.sleep(0.01)
                self.assertGreater(got, 1500000)
            finally:
                s.close()

        def run(fn, i):
            try:
                for _ in range(10):
                    fn(i)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append("%s: %r" % (fn.__name__, e))

        kinds = [keepalive, close, pipelined, half_close, upload, slow_download, keepalive,
                 upload]
        threads = [threading.Thread(target=run, args=(fn, i)) for i, fn in enumerate(kinds)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        harness.wait_until(lambda: d.service()["connections"] == 0, 10,
                           what="every connection to be closed")
        self.stop_daemon(d)

    def test_client_half_close_after_request_still_receives_full_response(self):
        d = self.start_daemon([harness.hello(worker_count=1)])
        s = harness.connect(d.port)
        self.addCleanup(s.close)
        s.sendall(harness.build_request("GET", "/bytes?n=2000000"))
        s.shutdown(socket.SHUT_WR)
        data = read_until_eof(s, time.monotonic() + 20)
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertEqual(len(body), 2000000)
        self.assertEqual(body, pattern(2000000))
        self.stop_daemon(d)

    def test_client_eof_reaches_worker_which_still_replies_after_it(self):
        d = self.start_daemon([self.pyworker("reverse")])
        payload = os.urandom(200000)
        s = harness.connect(d.port)
        self.addCleanup(s.close)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)  # the worker answers only once it sees our EOF
        got = read_until_eof(s, time.monotonic() + 15)
        self.assertEqual(len(got), len(payload))
        self.assertEqual(got, payload[::-1])
        self.stop_daemon(d)

    def test_worker_eof_reaches_client_which_can_still_send_to_worker(self):
        outdir = self.path("received")
        os.makedirs(outdir)
        d = self.start_daemon([self.pyworker("greet", outdir)])
        s = harness.connect(d.port)
        self.addCleanup(s.close)
        self.assertEqual(read_until_eof(s, time.monotonic() + 10), b"HELLO\n",
                         "the worker's shutdown(SHUT_WR) did not reach us as EOF")
        token = b"after-eof:" + os.urandom(50000).hex().encode()
        s.sendall(token)
        s.shutdown(socket.SHUT_WR)

        def received():
            for path in glob.glob(os.path.join(outdir, "conn-*.bin")):
                with open(path, "rb") as f:
                    if f.read() == token:
                        return path
            return None

        harness.wait_until(received, 10, what="the worker to receive what we sent after EOF")
        self.assertEqual(read_until_eof(s, time.monotonic() + 5), b"")
        self.stop_daemon(d)

    def test_idle_connection_closed_after_idle_timeout_while_active_one_stays_open(self):
        d = self.start_daemon([harness.hello(worker_count=2, idle_timeout="1s")], min_ready=2)
        idle_closed_after = []

        def idle():
            s = harness.connect(d.port)
            t0 = time.monotonic()
            try:
                s.settimeout(8)
                s.recv(1)
                idle_closed_after.append(time.monotonic() - t0)
            except ConnectionResetError:
                idle_closed_after.append(time.monotonic() - t0)
            except socket.timeout:
                idle_closed_after.append(None)
            finally:
                s.close()

        t = threading.Thread(target=idle, daemon=True)
        t.start()
        with harness.Conn(d.port, timeout=5) as c:
            t0 = time.monotonic()
            rounds = 0
            while time.monotonic() - t0 < 2.7:
                r = c.request("GET", "/pid", keepalive=True)
                self.assertEqual(r.status, 200)
                rounds += 1
                time.sleep(0.3)
            self.assertGreaterEqual(rounds, 5)
            self.assertEqual(c.request("GET", "/", keepalive=True).status, 200,
                             "an active connection was closed")
        t.join(10)
        self.assertEqual(len(idle_closed_after), 1)
        elapsed = idle_closed_after[0]
        self.assertIsNotNone(elapsed, "idle connection still open after 8 s")
        self.assertGreaterEqual(elapsed, 0.8, "idle connection closed before idle_timeout")
        self.assertLessEqual(elapsed, 4.0)
        self.stop_daemon(d)


if __name__ == "__main__":
    unittest.main()
