"""Tiny raw-socket workers for the integration tests, run by socketnautd with the Unix backend:
they listen on $SOCKETNAUT_SOCKET and serve one connection at a time.

  pyworker.py reverse            read until EOF, then send the data reversed and close
  pyworker.py greet OUTDIR       send "HELLO\\n", shut down our writing side, read until EOF,
                                 store what was read in OUTDIR/conn-N.bin
  pyworker.py slowhttp GO FILE   wait (at most 60 s) until file GO exists before listening,
                                 write FILE once listening, answer each HTTP request with
                                 "slow-start ok"
  pyworker.py health FLAG        like unlisten, but GET /health answers 503 while the file
                                 FLAG.PID exists (PID: the worker's), else 200
  pyworker.py spin               a blocking server: GET /spin?ms=N busy-waits N ms before it
                                 answers (with its pid), one request at a time
  pyworker.py patient BACKLOG    a blocking server listening with that backlog: reads each
                                 request until its blank line however slowly it comes (at
                                 most 60 s), answers "PID N" (its Nth request), then takes
                                 the next
  pyworker.py noaccept BACKLOG   listen with that backlog and never accept a connection
  pyworker.py unlisten           answer each HTTP request with its pid, on $SOCKETNAUT_SOCKET or
                                 127.0.0.1:$PORT; on SIGUSR1 close the listening socket and
                                 stay alive, serving nothing
"""

import os
import signal
import socket
import sys
import time


def listen(backlog=64):
    """On $SOCKETNAUT_SOCKET, or on 127.0.0.1:$PORT (backend tcp)."""
    if "SOCKETNAUT_SOCKET" not in os.environ:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(os.environ["PORT"])))
        s.listen(backlog)
        return s
    path = os.environ["SOCKETNAUT_SOCKET"]
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(backlog)
    return s


def read_all(c):
    chunks = []
    while True:
        d = c.recv(65536)
        if not d:
            return b"".join(chunks)
        chunks.append(d)


def reverse(s):
    while True:
        c, _ = s.accept()
        try:
            c.sendall(read_all(c)[::-1])
        except OSError:
            pass
        finally:
            c.close()


def greet(s, outdir):
    n = 0
    while True:
        c, _ = s.accept()
        n += 1
        got = b""
        try:
            c.sendall(b"HELLO\n")
            c.shutdown(socket.SHUT_WR)
            got = read_all(c)
        except OSError:
            pass
        finally:
            c.close()
        tmp = os.path.join(outdir, ".conn-%d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(got)
        os.rename(tmp, os.path.join(outdir, "conn-%d.bin" % n))


def serve_http(s, answer, timeout=10):
    """Answer each HTTP request on listener s with answer(request) -> (status, body), one
    connection at a time, until the listener is closed; a request may take `timeout` s."""
    while True:
        try:
            c, _ = s.accept()
        except OSError:
            return
        try:
            c.settimeout(timeout)
            data = b""
            while b"\r\n\r\n" not in data:
                d = c.recv(65536)
                if not d:
                    break
                data += d
            if data:
                status, body = answer(data)
                c.sendall(b"HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                          % (status, len(body), body))
        except OSError:
            pass
        finally:
            c.close()


def slowhttp(go, marker):
    for _ in range(3000):
        if os.path.exists(go):
            break
        time.sleep(0.02)
    s = listen()
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    serve_http(s, lambda data: (b"200 OK", b"slow-start ok\n"))


def unlisten(flag=None):
    if "SOCKETNAUT_SOCKET" in os.environ:
        s = listen()
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(os.environ["PORT"])))
        s.listen(64)
    signal.signal(signal.SIGUSR1, lambda *_: s.close())
    body = str(os.getpid()).encode()

    def answer(data):
        if flag and data.startswith(b"GET /health ") and \
                os.path.exists("%s.%d" % (flag, os.getpid())):
            return b"503 Service Unavailable", body
        return b"200 OK", body

    serve_http(s, answer)
    for _ in range(600):
        time.sleep(1)


def spin():
    def answer(data):
        ms = 0
        if data.startswith(b"GET /spin?ms="):
            ms = int(data[len(b"GET /spin?ms="):].split(b" ")[0])
        end = time.monotonic() + ms / 1000.0
        while time.monotonic() < end:
            pass
        return b"200 OK", str(os.getpid()).encode()

    serve_http(listen(), answer)


def patient(backlog):
    served = [0]

    def answer(data):
        served[0] += 1
        return b"200 OK", b"%d %d" % (os.getpid(), served[0])

    serve_http(listen(backlog), answer, 60)


def noaccept(backlog):
    s = listen(backlog)  # noqa: F841 - held open, never accepted on
    for _ in range(600):
        time.sleep(1)


def main():
    mode = sys.argv[1]
    if mode == "reverse":
        reverse(listen())
    elif mode == "greet":
        greet(listen(), sys.argv[2])
    elif mode == "slowhttp":
        slowhttp(sys.argv[2], sys.argv[3])
    elif mode == "unlisten":
        unlisten()
    elif mode == "spin":
        spin()
    elif mode == "patient":
        patient(int(sys.argv[2]))
    elif mode == "noaccept":
        noaccept(int(sys.argv[2]))
    elif mode == "health":
        unlisten(sys.argv[2])
    else:
        sys.exit("unknown mode %s" % mode)


if __name__ == "__main__":
    main()
