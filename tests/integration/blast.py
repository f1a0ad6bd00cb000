"""A worker that, on its first connection with data, writes until the master stops
reading (the client does not read), then exits while that connection is still open."""

import os
import socket
import time

path = os.environ["SOCKETNAUT_SOCKET"]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(16)
while True:
    c, _ = s.accept()
    if not c.recv(100):
        c.close()  # the master's readiness probe
        continue
    c.setblocking(False)
    chunk = b"x" * 65536
    stuck = None
    for _ in range(100000):
        try:
            c.send(chunk)
            stuck = None
        except BlockingIOError:
            stuck = stuck or time.monotonic()
            if time.monotonic() - stuck > 0.5:
                break
            time.sleep(0.01)
    os._exit(0)
