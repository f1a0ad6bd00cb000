"""The stats listener's /status page and /status.json: the page is self-contained and, loaded
in headless Chromium with its scripts run, shows every service by name and one row per worker
pid that /status.json lists; a screenshot is kept in the test's temporary directory."""

import html.parser
import json
import os
import shutil
import subprocess
import sys

import harness

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Dom(html.parser.HTMLParser):
    """Service sections (id service-NAME) and the data-pid of the worker rows in each."""

    def __init__(self):
        super().__init__()
        self.services = {}
        self.current = None
        self.headings = []
        self.in_h2 = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and (a.get("id") or "").startswith("service-"):
            self.current = a["id"][len("service-"):]
            self.services[self.current] = []
        elif tag == "tr" and "data-pid" in a and self.current is not None:
            self.services[self.current].append(int(a["data-pid"]))
        elif tag == "h2":
            self.in_h2 = True
            self.headings.append("")

    def handle_endtag(self, tag):
        if tag == "h2":
            self.in_h2 = False

    def handle_data(self, data):
        if self.in_h2:
            self.headings[-1] += data


class StatusPageTest(harness.DaemonTest):

    def start(self):
        self.stats_port = harness.free_port()
        d = self.start_daemon(
            [harness.hello(worker_count=2), harness.hello(name="api", worker_count=1)],
            {"stats_listen": "127.0.0.1:%d" % self.stats_port})
        d.wait_listening(self.stats_port)
        return d

    def chromium(self, *args):
        if CHROMIUM is None:
            self.fail("chromium is not installed (tools/install-deps installs it)")
        env = harness.daemon_env({"HOME": self.tmp})
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
            env.pop(name, None)
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-proxy-server",
                "--user-data-dir=" + self.path("chromium"), "--virtual-time-budget=5000"]
        p = subprocess.run(argv + list(args) + ["http://127.0.0.1:%d/status" % self.stats_port],
                           capture_output=True, text=True, timeout=120, env=env)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        return p.stdout

    def test_status_json_is_the_snapshot(self):
        d = self.start()
        d.wait_ready(3)
        r = harness.http(self.stats_port, path="/status.json")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("application/json"))
        st = json.loads(r.text)
        self.assertEqual(st["version"], 1)
        self.assertEqual(st["pid"], d.pid)
        self.assertEqual(sorted(s["name"] for s in st["services"]), ["api", "web"])
        pids = sorted(w["pid"] for s in st["services"] for w in s["workers"])
        self.assertEqual(pids, sorted(d.workers()))
        self.stop_daemon(d)

    def test_page_is_self_contained(self):
        d = self.start()
        r = harness.http(self.stats_port, path="/status")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/html"))
        self.assertIn("default-src 'none'", r.headers.get("content-security-policy", ""))
        for external in ("<link", " src=", "http://", "https://", "@import"):
            self.assertNotIn(external, r.text)
        self.stop_daemon(d)

    def test_chromium_shows_every_service_and_a_row_per_worker(self):
        d = self.start()
        d.wait_ready(3)
        st = json.loads(harness.http(self.stats_port, path="/status.json").text)
        want = {s["name"]: sorted(w["pid"] for w in s["workers"]) for s in st["services"]}
        self.assertEqual(sum(len(p) for p in want.values()), 3)
        dom = Dom()
        dom.feed(self.chromium("--dump-dom"))
        self.assertEqual({name: sorted(p) for name, p in dom.services.items()}, want,
                         "worker rows in the page after its scripts ran")
        for name in want:
            self.assertTrue(any(h.startswith("service %s" % name) for h in dom.headings),
                            "no heading for service %s in %r" % (name, dom.headings))
        shot = self.path("status.png")
        self.chromium("--window-size=1280,800", "--screenshot=" + shot)
        with open(shot, "rb") as f:
            png = f.read()
        self.assertTrue(png.startswith(b"\x89PNG\r\n\x1a\n"), "not a PNG")
        self.assertGreater(len(png), 10000, "a blank screenshot")
        self.stop_daemon(d)


if __name__ == "__main__":
    sys.exit("run through tests/integration/run.py")
