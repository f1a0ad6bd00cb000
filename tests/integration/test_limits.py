"""File descriptor exhaustion: the daemon pauses accepting instead of dying or spinning."""

import time
import unittest

import harness

NOFILE = 64
CLIENTS = 120


class FdLimitTest(harness.DaemonTest):

    def test_fd_exhaustion_keeps_daemon_alive_without_spinning_and_it_recovers(self):
        d = self.start_daemon([harness.hello(worker_count=1)], nofile=NOFILE, min_ready=1)
        self.assertEqual(harness.http(d.port, path="/pid").status, 200)
        clients = []
        self.addCleanup(lambda: [c.close() for c in clients])
        most_fds = 0
        for _ in range(CLIENTS):
            try:
                clients.append(harness.connect(d.port, timeout=2))
            except OSError:
                break  # the kernel's backlog is full too: enough
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            most_fds = max(most_fds, harness.open_fd_count(d.pid))
            if most_fds >= NOFILE - 2:
                break
            time.sleep(0.05)
        self.assertGreaterEqual(most_fds, NOFILE - 2,
                                "the daemon never came near its fd limit (%d open, %d "
                                "clients): the test did not exhaust it" % (most_fds, len(clients)))

        # Exhausted, with clients still waiting in the backlog: alive and not busy-looping.
        cpu0, t0 = harness.cpu_seconds(d.pid), time.monotonic()
        time.sleep(1.5)
        cpu = harness.cpu_seconds(d.pid) - cpu0
        self.assertTrue(d.alive(), "socketnautd died on fd exhaustion")
        self.assertLess(cpu / (time.monotonic() - t0), 0.5,
                        "socketnautd spins while out of fds (%.2f s CPU in 1.5 s)" % cpu)

        for c in clients:
            c.close()
        clients.clear()

        def served():
            try:
                return harness.http(d.port, path="/pid", timeout=2).status == 200
            except (OSError, harness.IncompleteResponse):
                return False

        harness.wait_until(served, 10, interval=0.2, what="a request served after the clients left")
        self.assertTrue(d.alive())
        self.stop_daemon(d)

    def test_clients_arriving_while_out_of_fds_are_served_once_fds_free_up(self):
        # A relay holds two fds, so whether the last free fd goes to accept() (which then
        # fails) or to the worker-side socket() depends on parity: try both.
        for nofile in (NOFILE, NOFILE + 1):
            with self.subTest(nofile=nofile):
                self.check_clients_wait_for_fds(nofile)

    def check_clients_wait_for_fds(self, nofile):
        d = self.start_daemon([harness.hello(worker_count=1)], nofile=nofile, min_ready=1,
                              name="nofile%d" % nofile)
        # ready before the fds run out: a starting worker's probe needs an fd of its own
        d.wait_ready(1)
        idle, waiting = [], []
        self.addCleanup(lambda: [c.close() for c in idle + waiting])
        for _ in range(nofile):  # more than the daemon can relay: it runs out of fds
            idle.append(harness.connect(d.port, timeout=2))
        harness.wait_until(lambda: harness.open_fd_count(d.pid) >= nofile - 2, 5,
                           what="the daemon to use up its fds")
        for _ in range(5):  # these queue while no fd is free
            c = harness.Conn(d.port, timeout=15)
            c.sock.sendall(harness.build_request("GET", "/pid"))
            waiting.append(c)
        time.sleep(0.5)
        for c in idle:
            c.close()
        failures = []
        for i, c in enumerate(waiting):
            try:
                r = c.read_response()
                if r.status != 200:
                    failures.append("client %d: status %d" % (i, r.status))
            except (OSError, harness.IncompleteResponse) as e:
                failures.append("client %d: %s: %s" % (i, type(e).__name__, e))
            c.close()
        self.assertEqual(failures, [], "with RLIMIT_NOFILE %d, clients that arrived while the "
                                       "daemon was out of fds were dropped instead of waiting"
                                       % nofile)
        self.stop_daemon(d)

if __name__ == "__main__":
    unittest.main()
