#!/usr/bin/env python3
"""A Python worker for services in mode handoff (tests/integration/test_handoff.py).

    handoff_worker.py threading    http.server (ThreadingHTTPServer) fed by serve_handoffs()
    handoff_worker.py asyncio      asyncio streams fed by serve_handoffs_async()

Every answer is JSON: this worker's pid, the kind, the peer info the agent gives for the
connection (as any relayed connection's) and what getpeername() sees.  Drains when asked.
"""

import asyncio
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "agents", "python"))

from socketnaut_agent import ServiceAgent  # noqa: E402

agent = ServiceAgent()
KIND = sys.argv[1] if len(sys.argv) > 1 else "threading"


def answer(info, peername):
    return json.dumps({"pid": os.getpid(), "kind": KIND, "info": info,
                       "getpeername": list(peername[:2])}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = answer(agent.peer_info(self), self.connection.getpeername())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def threading_main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.daemon_threads = True
    agent.ready()
    agent.serve_handoffs(server)


async def asyncio_main():
    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                info = await agent.peer_info_async(writer)
                body = answer(info, writer.get_extra_info("peername"))
                close = b"connection: close" in head.lower()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n%s\r\n" % (
                                 len(body), b"Connection: close\r\n" if close else b"") + body)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def stop():
        pass

    agent.on_drain(stop)
    agent.ready()
    await agent.serve_handoffs_async(handle)
    # Let the connections in progress end (bounded), then leave.
    for _ in range(50):
        if not agent._handed:
            break
        await asyncio.sleep(0.1)


if __name__ == "__main__":
    if KIND == "asyncio":
        asyncio.run(asyncio_main())
    else:
        threading_main()
