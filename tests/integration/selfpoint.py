"""A backend-agent worker that reports READY with the address in $POINT_AT (e.g. the
master's own public port): the master must refuse it."""

import os
import socket
import struct
import time

ctl = socket.socket(fileno=int(os.environ["SOCKETNAUT_CONTROL_FD"]))
payload = ("address=" + os.environ["POINT_AT"]).encode()
ctl.sendall(struct.pack(">BBH", 1, 1, len(payload)) + payload)
time.sleep(30)
