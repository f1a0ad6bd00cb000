"""A worker that serves HTTP and writes to its stdout and stderr (mode in argv[1]).

Modes: say (a line on stdout, a line on stderr, a 5,000-byte line, a line ended by \\r\\n),
flood (once the file argv[2].go exists, 100-byte lines on stderr as fast as it can for 4 s,
then the count written goes to argv[2]), stream (the same, but bytes with no newline at all),
last-words (three lines, the last without a newline,
then exit 3 before serving anything), orphan (starts a grandchild in its own session that
keeps stdout open and sleeps, writes its pid to argv[2], then serves).
"""

import os
import socketserver
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"noisy ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def flood(out, newline=True):
    for _ in range(600):  # the test says when, within 60 s
        if os.path.exists(out + ".go"):
            break
        time.sleep(0.1)
    sent, end = 0, time.monotonic() + 4.0
    line = b"flood %s%s" % (b"y" * 93, b"\n" if newline else b"y")
    try:
        while time.monotonic() < end and sent < 100000000:
            os.write(2, line * 64)
            sent += 64
    finally:
        with open(out + ".tmp", "w") as f:
            f.write(str(sent))
        os.rename(out + ".tmp", out)


def main():
    mode = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else None
    if mode == "say":
        sys.stdout.write("hello on stdout\n")
        sys.stdout.flush()
        sys.stderr.write("hello on stderr\n")
        sys.stderr.write("long " + "z" * 5000 + "\n")
        sys.stderr.write("windows line\r\n")
        sys.stderr.flush()
    elif mode == "last-words":
        os.write(1, b"last words 1\nlast words 2\nlast words 3 without newline")
        os._exit(3)
    elif mode == "orphan":
        p = subprocess.Popen(["sleep", "60"], start_new_session=True,
                             stdin=subprocess.DEVNULL)
        with open(out + ".tmp", "w") as f:
            f.write(str(p.pid))
        os.rename(out + ".tmp", out)
    elif mode in ("flood", "stream"):
        threading.Thread(target=flood, args=(out, mode == "flood"), daemon=True).start()
    server = Server(os.environ["SOCKETNAUT_SOCKET"], Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
