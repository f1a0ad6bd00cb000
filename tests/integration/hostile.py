"""A worker that serves HTTP correctly but abuses its control channel (mode in argv[1]).

Modes: garbage, oversize, unknown, unexpected (sends DRAIN, a master-only message),
flood-unread (peer queries as fast as it can, never reading a reply), flood-read (50,000
queries, reading every reply; writes the reply count to the file in argv[2]),
log-flood (once the file argv[2].go exists, LOG frames of about 1 KB as fast as it can for
4 s; then writes the count sent to argv[2]), debug-flood (short LOG frames at level debug,
which the master filters out), hello-flood (the same with HELLO frames), ready-repeat (10,000 READY frames),
drained-unasked (1,000 DRAINED frames that no DRAIN asked for), log-burst (50 short LOG
frames at once, then writes "50" to argv[2]), ino-flood (holds argv[3] socketpairs, which
make every scan of the kernel's Unix sockets longer; once argv[2].go exists, peer queries
for an inode that matches nothing for 4 s, reading the replies; then writes the count sent
to argv[2]).
"""

import os
import socket
import socketserver
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hostile ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):
        return "unix"

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def frame(kind, payload=b""):
    return struct.pack(">BBH", 1, kind, len(payload)) + payload


def abuse(ctl, mode, out):
    if mode == "garbage":
        ctl.sendall(b"\xff" * 100)
    elif mode == "oversize":
        ctl.sendall(struct.pack(">BBH", 1, 2, 0xffff) + b"x" * 5000)
    elif mode == "unknown":
        ctl.sendall(frame(0x09))
    elif mode == "unexpected":
        ctl.sendall(frame(0x82))
    elif mode == "flood-unread":
        ctl.setblocking(False)
        i = 0
        while i < 2000000:
            try:
                ctl.send(frame(2, b"id=%d\nkey=1" % i))
            except BlockingIOError:
                threading.Event().wait(0.001)
                continue
            except OSError:
                return  # the master closed the channel: what we wanted
            i += 1
    elif mode in ("log-flood", "debug-flood", "hello-flood"):
        for _ in range(600):  # the test says when, within 60 s
            if os.path.exists(out + ".go"):
                break
            time.sleep(0.1)
        sent, end = 0, time.monotonic() + 4.0
        try:
            while time.monotonic() < end and sent < 10000000:
                if mode == "hello-flood":
                    batch = frame(5) * 64
                elif mode == "debug-flood":  # short and the same: cheap to send
                    batch = frame(3, b"level=7\ntext=flood") * 64
                else:
                    batch = b"".join(frame(3, b"level=3\ntext=flood %d %s"
                                           % (sent + i, b"x" * 1000)) for i in range(64))
                ctl.sendall(batch)
                sent += 64
        finally:
            with open(out + ".tmp", "w") as f:
                f.write(str(sent))
            os.rename(out + ".tmp", out)
    elif mode == "log-burst":
        ctl.sendall(b"".join(frame(3, b"level=3\ntext=burst %d" % i) for i in range(50)))
        with open(out, "w") as f:
            f.write("50")
    elif mode in ("ready-repeat", "drained-unasked"):
        kind, count = (1, 10000) if mode == "ready-repeat" else (4, 1000)
        try:
            for _ in range(count):
                ctl.sendall(frame(kind))
        except OSError:
            pass  # the master closed the channel: what we wanted
    elif mode == "ino-flood":
        ino_flood(ctl, out, int(sys.argv[3]))
    elif mode == "flood-read":
        n = 50000
        got = [0]

        def reader():
            buf = b""
            while got[0] < n:
                data = ctl.recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 4:
                    length = struct.unpack(">H", buf[2:4])[0]
                    if len(buf) < 4 + length:
                        break
                    buf = buf[4 + length:]
                    got[0] += 1
        t = threading.Thread(target=reader)
        t.start()
        for i in range(n):
            ctl.sendall(frame(2, b"id=%d\nkey=1" % i))
        t.join(60)
        with open(out, "w") as f:
            f.write(str(got[0]))


def ino_flood(ctl, out, pairs):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    keep = []
    try:
        for _ in range(pairs):
            keep.append(socket.socketpair())
    except OSError:
        pass  # as many as the limit allows
    for _ in range(600):  # the test says when, within 60 s
        if os.path.exists(out + ".go"):
            break
        time.sleep(0.1)

    def reader():
        while ctl.recv(1 << 20):
            pass
    threading.Thread(target=reader, daemon=True).start()
    sent, end = 0, time.monotonic() + 4.0
    batch = b"".join(frame(2, b"id=%d\nkey=ino:1" % i) for i in range(64))
    try:
        while time.monotonic() < end:
            ctl.sendall(batch)
            sent += 64
    finally:
        with open(out + ".tmp", "w") as f:
            f.write(str(sent))
        os.rename(out + ".tmp", out)


def main():
    mode = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else None
    path = os.environ["SOCKETNAUT_SOCKET"]
    server = Server(path, Handler)
    ctl = socket.socket(fileno=int(os.environ["SOCKETNAUT_CONTROL_FD"]))
    threading.Thread(target=abuse, args=(ctl, mode, out), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
