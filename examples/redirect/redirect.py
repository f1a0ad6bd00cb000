#!/usr/bin/env python3
"""An HTTP -> HTTPS redirect worker for socketnautd: every request gets a
301 to https://HOST/PATH (HOST from the Host header, port dropped; set
HTTPS_PORT to a port other than 443 to put it in the URL).

As Socketnaut workers do, it listens on 127.0.0.1 port 0 and reports the
port the kernel chose through the agent (backend "agent").  It logs each
redirect with the real client address.
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "agents", "python"))
from socketnaut_agent import ServiceAgent  # noqa: E402

agent = ServiceAgent()
HTTPS_PORT = os.environ.get("HTTPS_PORT", "443")


def https_host(host_header):
    host = (host_header or "localhost").strip()
    if host.startswith("["):                        # [v6]:port
        host = host[:host.find("]") + 1] if "]" in host else host
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if not host or any(c in host for c in "/\\@?# \t"):
        host = "localhost"
    return host if HTTPS_PORT == "443" else "%s:%s" % (host, HTTPS_PORT)


class Redirect(BaseHTTPRequestHandler):
    server_version = "redirect"
    protocol_version = "HTTP/1.1"

    def redirect(self, body=True):
        path = self.path if self.path.startswith("/") else "/"
        location = "https://%s%s" % (https_host(self.headers.get("Host")), path)
        info = agent.peer_info(self)
        client = ("%s port %d" % (info["remote"]["address"], info["remote"]["port"])
                  if info else "unknown")
        agent.log("redirect %s %s from %s to %s" % (self.command, self.path, client, location))
        text = ("Moved to %s\n" % location).encode() if body else b""
        self.send_response(301)
        self.send_header("Location", location)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(text) if body else 0))
        self.end_headers()
        if text:
            self.wfile.write(text)

    def do_GET(self):
        self.redirect()

    def do_HEAD(self):
        self.redirect(body=False)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def log_message(self, fmt, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    agent.attach_http_server(server)
    agent.ready(port=server.server_address[1])
    if not agent.enabled:
        print("redirect: listening on 127.0.0.1:%d" % server.server_address[1])
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
