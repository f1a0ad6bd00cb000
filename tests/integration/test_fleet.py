"""A fleet: HAProxy in a "load balancer" network namespace in front of two socketnautd "hosts",
each in a namespace of its own behind a veth pair, PROXY protocol v2 from HAProxy into
accept_proxy, HAProxy's health checks against /health/SERVICE on each host's stats listener,
and a client in a fourth namespace.  Under wrk load through HAProxy: the worker learns the true
client address, SIGTERM of one host with drain_delay fails no request, a reload of one host fails
none.  The namespaces and links exist only for the test; skipped where namespaces are refused.

    client ns 10.231.0.2 -- 10.231.0.1 lb ns (HAProxy :8080)
                                        10.231.1.1 -- 10.231.1.2 host1 ns (socketnautd :8080, stats :9100)
                                        10.231.2.1 -- 10.231.2.2 host2 ns
"""

import os
import re
import shutil
import signal
import subprocess
import time
import unittest

import harness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HELLO_PY = os.path.join(ROOT, "examples", "python-hello", "hello.py")


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=check)


def netns_usable():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "needs root and ip(8)"
    name = "snt-probe-%d" % os.getpid()
    r = sh("ip", "netns", "add", name, check=False)
    if r.returncode != 0:
        return "network namespaces are not permitted here: " + r.stderr.strip()
    sh("ip", "netns", "del", name, check=False)
    return None


def parse_wrk(out):
    """(requests, failures) from wrk's summary: socket errors plus non-2xx/3xx answers."""
    m = re.search(r"(\d+) requests in", out)
    if not m:
        raise AssertionError("no request count in wrk output:\n" + out)
    failures = 0
    m2 = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m2:
        failures += sum(int(x) for x in m2.groups())
    m3 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m3:
        failures += int(m3.group(1))
    return int(m.group(1)), failures


@unittest.skipIf(shutil.which("haproxy") is None or shutil.which("wrk") is None,
                 "needs haproxy and wrk (tools/install-deps installs them)")
class FleetTest(harness.DaemonTest):

    def setUp(self):
        why = netns_usable()
        if why is not None:
            self.skipTest(why)
        super().setUp()
        tag = "%x" % (os.getpid() & 0xffff)
        self.ns = {k: "snt-%s-%s" % (tag, k) for k in ("cl", "lb", "h1", "h2")}
        self.addCleanup(self.teardown_net)
        for n in self.ns.values():
            sh("ip", "netns", "add", n)
        self.link("cl", "10.231.0.2", "lb", "10.231.0.1", tag + "a")
        self.link("h1", "10.231.1.2", "lb", "10.231.1.1", tag + "b")
        self.link("h2", "10.231.2.2", "lb", "10.231.2.1", tag + "c")
        for n in self.ns.values():
            self.ip(n, "link", "set", "lo", "up")

    def ip(self, ns, *args):
        return sh("ip", "-n", self.ns[ns] if ns in self.ns else ns, *args)

    def link(self, a, addr_a, b, addr_b, tag):
        ea, eb = "sn%s0" % tag, "sn%s1" % tag
        sh("ip", "link", "add", ea, "netns", self.ns[a], "type", "veth", "peer", "name", eb,
           "netns", self.ns[b])
        self.ip(a, "addr", "add", addr_a + "/24", "dev", ea)
        self.ip(b, "addr", "add", addr_b + "/24", "dev", eb)
        self.ip(a, "link", "set", ea, "up")
        self.ip(b, "link", "set", eb, "up")

    def teardown_net(self):
        for p in getattr(self, "extra_procs", []):
            if p.poll() is None:
                p.kill()
                p.wait(10)
        for n in self.ns.values():
            sh("ip", "netns", "del", n, check=False)

    def in_ns(self, ns, argv):
        return ["ip", "netns", "exec", self.ns[ns]] + argv

    def start_host(self, ns, addr):
        """socketnautd in namespace ns: python-hello workers (the Python agent asks the master
        for the client), PROXY v2 accepted from the load balancer only."""
        d = harness.Daemon(os.path.join(self.tmp), [{
            "name": "web", "listen": ["%s:8080" % addr],
            "command": "python3 %s" % HELLO_PY,
            "min_workers": 2, "max_workers": 4,
            "accept_proxy": "v2", "trusted_proxies": [addr.rsplit(".", 1)[0] + ".1/32"],
        }], {"stats_listen": "%s:9100" % addr, "drain_delay": "2s",
             "runtime_dir": os.path.join(self.tmp, "run-" + ns)}, name="host-" + ns)
        self.daemons.append(d)
        # ip netns exec execs the daemon: the Popen pid is the daemon's
        args = self.in_ns(ns, [harness.DAEMON, "-c", d.config_path])
        with open(d.log_path, "ab") as log:
            d.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                      env=harness.daemon_env(), cwd=self.tmp,
                                      start_new_session=True)
        d.pid = d.proc.pid
        harness._live_groups.add(d.pid)
        d.wait_ready(2, timeout=30)
        return d

    def start_haproxy(self):
        cfg = os.path.join(self.tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("""global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
    option http-server-close
frontend fe
    bind 10.231.0.1:8080
    default_backend hosts
backend hosts
    balance roundrobin
    http-response set-header X-Host %[srv_name]
    option httpchk GET /health/web
    http-check expect status 200
    default-server send-proxy-v2 check port 9100 inter 200ms fall 2 rise 2
    server h1 10.231.1.2:8080
    server h2 10.231.2.2:8080
""")
        log = open(os.path.join(self.tmp, "haproxy.log"), "ab")
        p = subprocess.Popen(self.in_ns("lb", ["haproxy", "-db", "-f", cfg]),
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True)
        log.close()
        self.extra_procs = getattr(self, "extra_procs", []) + [p]
        return p

    def curl(self, path="/"):
        r = subprocess.run(self.in_ns("cl", ["curl", "-si", "-m", "5",
                                             "http://10.231.0.1:8080" + path]),
                           capture_output=True, timeout=10)
        return r.returncode, r.stdout

    def wait_both_up(self):
        """Until HAProxy sends clients to both hosts (both passed their health checks)."""
        seen = set()

        def both():
            rc, out = self.curl()
            m = re.search(rb"(?im)^x-host: (h[12])", out)
            if rc == 0 and m:
                seen.add(m.group(1))
            return len(seen) == 2
        harness.wait_until(both, 20, interval=0.1, what="clients reaching both hosts")

    def wrk(self, secs=6):
        return subprocess.Popen(self.in_ns("cl", ["wrk", "-t1", "-c8", "-d%ds" % secs,
                                                  "http://10.231.0.1:8080/"]),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def fleet(self):
        h1 = self.start_host("h1", "10.231.1.2")
        h2 = self.start_host("h2", "10.231.2.2")
        self.start_haproxy()
        self.wait_both_up()
        return h1, h2

    def test_worker_sees_the_true_client_through_the_load_balancer(self):
        self.fleet()
        for _ in range(4):
            rc, body = self.curl()
            self.assertEqual(rc, 0)
            self.assertIn(b"client 10.231.0.2 port", body,
                          "the worker did not learn the client behind HAProxy: %r" % body)

    def test_sigterm_with_drain_delay_fails_no_request(self):
        h1, h2 = self.fleet()
        w = self.wrk(6)
        time.sleep(1.5)
        os.kill(h1.pid, signal.SIGTERM)
        out, _ = w.communicate(timeout=30)
        self.assertEqual(h1.proc.wait(30), 0)
        n, failed = parse_wrk(out)
        self.assertGreater(n, 100, out)
        self.assertEqual(failed, 0, "requests failed while one host drained:\n" + out)
        self.assertTrue(h2.alive())

    def test_reload_of_one_host_fails_no_request(self):
        h1, _ = self.fleet()
        w = self.wrk(5)
        time.sleep(1.5)
        os.kill(h1.pid, signal.SIGHUP)
        out, _ = w.communicate(timeout=30)
        n, failed = parse_wrk(out)
        self.assertGreater(n, 100, out)
        self.assertEqual(failed, 0, "requests failed during one host's reload:\n" + out)
        self.assertTrue(h1.alive())


if __name__ == "__main__":
    unittest.main()
