"""Late binding: a client with no worker waits in the service's queue and goes to the first
worker that becomes ready or frees a slot (oldest first), never to a worker still starting;
worker_concurrency, spawn_concurrency, spare_workers and max_queue bound what the pool does."""

import os
import re
import threading
import time
import unittest

import harness


def slow_after_first(tmp, seconds):
    """A worker command: the first start serves at once, later ones start `seconds` late."""
    script = os.path.join(tmp, "slowstart.sh")
    with open(script, "w") as f:
        f.write('#!/bin/sh\nif [ -e "$FIRST" ]; then sleep %s; fi\n: > "$FIRST"\n'
                'exec socketnaut-hello --socket "$1"\n' % seconds)
    os.chmod(script, 0o755)
    return script



def sockets_of(pid):
    """Sockets pid holds now (an fd may close while we look)."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            n += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except FileNotFoundError:
            pass
    return n


class Timed(threading.Thread):
    """One request in a thread; records when it ended and what it got."""

    def __init__(self, port, path):
        super().__init__()
        self.port, self.path = port, path
        self.result = self.ended = None

    def run(self):
        try:
            r = harness.http(self.port, path=self.path, timeout=30)
            self.result = (r.status, r.text.strip())
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.result = repr(e)
        self.ended = time.monotonic()


class QueueTest(harness.DaemonTest):

    def pool_with_a_slow_second(self, seconds):
        """min_workers 1, max_workers 2: the first worker serves at once, the second takes
        `seconds` to start.  Returns the daemon and the first worker's pid."""
        script = slow_after_first(self.tmp, seconds)
        d = self.start_daemon([{"name": "web", "min_workers": 1, "max_workers": 2,
                                "command": script + " {socket}",
                                "env": ["FIRST=" + self.path("first")]}])
        return d, d.wait_workers(1)[0]

    def test_queued_client_goes_to_the_first_free_worker_not_a_starting_one(self):
        d, first = self.pool_with_a_slow_second(4)
        busy = Timed(d.port, "/sleep?ms=1000")
        busy.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        waiting = Timed(d.port, "/pid")
        waiting.start()
        busy.join(30)
        waiting.join(30)
        self.assertEqual(busy.result[0], 200)
        self.assertEqual(waiting.result, (200, str(first)),
                         "the queued client did not go to the worker that freed first")
        self.assertLess(waiting.ended - t0, 3.0, "the client waited for the starting worker")
        self.stop_daemon(d)

    def test_at_max_workers_a_client_waits_in_the_queue_while_a_worker_still_starts(self):
        d, first = self.pool_with_a_slow_second(6)
        busy = Timed(d.port, "/sleep?ms=3000")
        busy.start()
        harness.wait_until(lambda: d.service()["connections"] == 1, 10,
                           what="the first client on the first worker")
        second = Timed(d.port, "/pid")  # queued; the second worker starts for it
        second.start()
        harness.wait_until(lambda: d.service()["workers_online"] == 2, 10,
                           what="the pool growing to max_workers")
        third = Timed(d.port, "/pid")
        third.start()
        harness.wait_until(lambda: d.service()["connections"] == 3, 10,
                           what="the third client accepted")
        svc = d.service()
        self.assertEqual(svc["workers_ready"], 1, "the second worker was already ready")
        self.assertEqual(svc["queued"], 2, "a client was bound to the busy worker while "
                         "the pool still had a worker starting")
        for t in (busy, second, third):
            t.join(30)
        self.assertEqual(busy.result[0], 200)
        self.assertEqual(second.result, (200, str(first)))
        self.assertEqual(third.result[0], 200)
        self.stop_daemon(d)

    def test_a_deep_queue_puts_one_client_behind_a_busy_worker_oldest_first(self):
        # The starting worker will take one client and the busy one another at its next
        # turn: a fourth waiting client is one too many, so the busy worker takes the
        # oldest waiting one into its backlog now (one only, and never the newest).
        d, first = self.pool_with_a_slow_second(6)
        busy = Timed(d.port, "/sleep?ms=1500")
        busy.start()
        harness.wait_until(lambda: d.service()["connections"] == 1, 10,
                           what="the first client on the first worker")
        waiting = []
        t0 = time.monotonic()
        for n in range(3):
            t = Timed(d.port, "/sleep?ms=200")
            t.start()
            waiting.append(t)
            harness.wait_until(lambda: d.service()["connections"] == n + 2, 10,
                               what="client %d accepted" % (n + 2))
        svc = d.service()
        self.assertEqual(svc["workers_ready"], 1, "the second worker was already ready")
        self.assertEqual(svc["queued"], 2)
        held = [w["connections"] for w in svc["workers"] if w["pid"] == first]
        self.assertEqual(held, [2], "the busy worker did not take exactly one more")
        for t in [busy] + waiting:
            t.join(30)
        self.assertEqual(busy.result[0], 200)
        self.assertEqual([t.result[0] for t in waiting], [200] * 3)
        # The second worker starts 6 s late: the first served them all, one at a time.
        self.assertLess(max(t.ended for t in waiting) - t0, 5.0)
        ends = [t.ended for t in waiting]
        self.assertEqual(ends, sorted(ends), "waiting clients were not served oldest first")
        self.assertGreater(min(b - a for a, b in zip(ends, ends[1:])), 0.1,
                           "the first worker served two of them at once")
        self.stop_daemon(d)

    def test_a_worker_that_ended_its_answer_takes_the_next_client_before_this_one_hangs_up(self):
        # socketnaut-hello half-closes after a Connection: close answer and lingers until
        # the client's end.  The client here reads its answer and stays: the worker has said
        # all it will, so the next client goes to it, not to the queue for the slow start.
        d, first = self.pool_with_a_slow_second(6)
        stay = harness.Conn(d.port, timeout=10)
        stay.send(harness.build_request("GET", "/pid"))
        r = stay.read_response()
        self.assertEqual((r.status, r.text.strip()), (200, str(first)))
        self.assertEqual(d.service()["connections"], 1, "the first client is still connected")
        t0 = time.monotonic()
        nxt = Timed(d.port, "/pid")
        nxt.start()
        nxt.join(30)
        self.assertEqual(nxt.result, (200, str(first)))
        self.assertLess(nxt.ended - t0, 3.0, "the client waited for the starting worker")
        stay.close()
        self.stop_daemon(d)

    def test_a_freed_slot_takes_the_head_of_the_queue_in_fifo_order(self):
        d = self.start_daemon([harness.hello(worker_count=1, worker_concurrency=1)])
        d.wait_workers(1)
        holder = Timed(d.port, "/sleep?ms=600")
        holder.start()
        time.sleep(0.2)
        queued = []
        for _ in range(4):
            t = Timed(d.port, "/sleep?ms=100")
            t.start()
            queued.append(t)
            time.sleep(0.05)
        for t in [holder] + queued:
            t.join(30)
        self.assertEqual([t.result[0] for t in queued], [200] * 4)
        ends = [t.ended for t in queued]
        self.assertEqual(ends, sorted(ends), "queued clients were not served oldest first")
        self.stop_daemon(d)

    def test_worker_concurrency_1_never_gives_a_worker_a_second_connection(self):
        d = self.start_daemon([harness.hello(worker_count=2, worker_concurrency=1)])
        # Ready, not just running: the master's readiness probe is a connection too, and a
        # worker that accepts it together with its first client holds both for a moment.
        pids = d.wait_ready(2)
        clients = [Timed(d.port, "/sleep?ms=300") for _ in range(6)]
        for t in clients:
            t.start()
        most = 0
        deadline = time.monotonic() + 10
        while any(t.is_alive() for t in clients) and time.monotonic() < deadline:
            for pid in pids:
                most = max(most, sockets_of(pid) - 2)  # less its listener and control channel
            time.sleep(0.01)
        for t in clients:
            t.join(30)
        self.assertEqual([t.result[0] for t in clients], [200] * 6)
        self.assertEqual(most, 1, "a worker held %d client connections at once" % most)
        self.stop_daemon(d)

    def test_spawn_concurrency_is_never_exceeded(self):
        script = slow_after_first(self.tmp, 0.5)
        d = self.start_daemon([{"name": "web", "min_workers": 1, "max_workers": 6,
                                "spawn_concurrency": 2, "worker_concurrency": 1,
                                "command": script + " {socket}",
                                "env": ["FIRST=" + self.path("first")]}])
        d.wait_workers(1)
        clients = [Timed(d.port, "/sleep?ms=1500") for _ in range(6)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(30)
        self.assertEqual([t.result[0] for t in clients], [200] * 6)
        starting, most, started = set(), 0, 0
        for line in d.log().splitlines():
            m = re.search(r"worker (\d+): (started|ready at)", line)
            if not m:
                continue
            if m.group(2) == "started":
                starting.add(m.group(1))
                started += 1
            else:
                starting.discard(m.group(1))
            most = max(most, len(starting))
        self.assertGreaterEqual(started, 4, "the pool did not grow")
        self.assertLessEqual(most, 2, "more than spawn_concurrency workers started at once")
        self.stop_daemon(d)

    def test_spare_workers_are_kept_above_the_busy_ones_and_extra_ones_reaped(self):
        d = self.start_daemon([harness.hello(min_workers=1, max_workers=5, spare_workers=2,
                                             workers_checking_interval="200ms")])
        d.wait_workers(2, what="2 spare workers at rest")
        busy = [Timed(d.port, "/sleep?ms=1500") for _ in range(2)]
        for t in busy:
            t.start()
        d.wait_workers(4, what="2 busy + 2 spare")
        for t in busy:
            t.join(30)
        d.wait_workers(2, timeout=10, what="the extra idle workers reaped")
        self.stop_daemon(d)

    def test_max_queue_leaves_further_clients_in_the_kernel_backlog(self):
        go, marker = self.path("go"), self.path("marker")
        d = self.start_daemon([{"name": "web", "worker_count": 1, "control": False,
                                "max_queue": 2, "queue_timeout": "20s",
                                "command": [harness.PYTHON, harness.PYWORKER, "slowhttp",
                                            go, marker]}])
        conns = []
        for _ in range(5):
            c = harness.Conn(d.port, timeout=20)
            c.sock.sendall(harness.build_request("GET", "/"))
            conns.append(c)
        # Two queued in the daemon, three left in the listen backlog.
        harness.wait_until(lambda: listen_queue(d.port) == 3, 5,
                           what="three clients in the kernel backlog")
        open(go, "w").close()
        for c in conns:
            self.assertEqual(c.read_response().status, 200)
            c.close()
        self.stop_daemon(d)


def listen_queue(port):
    """Connections waiting in the accept queue of the listener on 127.0.0.1:port."""
    with open("/proc/net/tcp") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                return int(fields[4].split(":")[1], 16)
    return None


if __name__ == "__main__":
    unittest.main()
