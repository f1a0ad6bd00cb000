"""Tiny raw-socket workers for the integration tests, run by socketnautd with the Unix backend:
they listen on $SOCKETNAUT_SOCKET and serve one connection at a time.

  pyworker.py reverse            read until EOF, then send the data reversed and close
  pyworker.py greet OUTDIR       send "HELLO\\n", shut down our writing side, read until EOF,
                                 store what was read in OUTDIR/conn-N.bin
  pyworker.py slowhttp GO FILE   wait (at most 60 s) until file GO exists before listening,
                                 write FILE once listening, answer each HTTP request with
                                 "slow-start ok"
"""

import os
import socket
import sys
import time


def listen():
    path = os.environ["SOCKETNAUT_SOCKET"]
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(64)
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


def slowhttp(go, marker):
    for _ in range(3000):
        if os.path.exists(go):
            break
        time.sleep(0.02)
    s = listen()
    with open(marker, "w") as f:
        f.write(str(os.getpid()))
    body = b"slow-start ok\n"
    while True:
        c, _ = s.accept()
        try:
            c.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                d = c.recv(65536)
                if not d:
                    break
                data += d
            if data:
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                          % (len(body), body))
        except OSError:
            pass
        finally:
            c.close()


def main():
    mode = sys.argv[1]
    if mode == "reverse":
        reverse(listen())
    elif mode == "greet":
        greet(listen(), sys.argv[2])
    elif mode == "slowhttp":
        slowhttp(sys.argv[2], sys.argv[3])
    else:
        sys.exit("unknown mode %s" % mode)


if __name__ == "__main__":
    main()
