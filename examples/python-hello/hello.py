#!/usr/bin/env python3
"""A Python http.server worker for socketnautd that logs each request with
the real client address, asked of the master through socketnaut_agent.

It listens on its private Unix socket ($SOCKETNAUT_SOCKET, backend "unix"),
where every client seems to come from the master; the agent's peer_info()
returns the client's own address and port and the public address it
connected to.  Each request is logged into socketnautd's log (tagged with
the service and this worker's pid) and answered with a greeting.

Run on its own (no socketnautd) it serves on 127.0.0.1:8000 and the agent
is a no-op.
"""

import os
import socketserver
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "agents", "python"))
from socketnaut_agent import ServiceAgent  # noqa: E402

agent = ServiceAgent()


class Handler(BaseHTTPRequestHandler):
    server_version = "python-hello"

    def do_GET(self):
        info = agent.peer_info(self)
        if info is not None:
            client = "%s port %d" % (info["remote"]["address"], info["remote"]["port"])
            via = " via %s port %d" % (info["local"]["address"], info["local"]["port"])
        else:
            client, via = "unknown", ""
        agent.log("%s %s from %s%s" % (self.command, self.path, client, via))
        body = ("Hello from Python worker %d, client %s\n" % (os.getpid(), client)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass    # requests are logged through the agent


class ThreadingUnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    path = os.environ.get("SOCKETNAUT_SOCKET")
    if path:
        if os.path.exists(path):
            os.unlink(path)
        server = ThreadingUnixHTTPServer(path, Handler)
    else:
        server = ThreadingHTTPServer(("127.0.0.1", 8000), Handler)
    agent.attach_http_server(server)    # DRAIN: stop, finish requests, exit
    agent.ready()                       # listening now
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
