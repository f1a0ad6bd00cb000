"""socketnaut_agent: the worker side of socketnautd's control channel.

One file, Python 3 standard library only (3.7 or later).  Copy it next to
your program or put agents/python on PYTHONPATH.

socketnautd gives every worker one end of a private socketpair, its fd
number in $SOCKETNAUT_CONTROL_FD (protocol: socketnaut-agent(7)).  Through
it a worker says it is ready (and where it listens, with backend "agent"),
asks for the real client address of a relayed connection, writes lines
into the daemon's log, and is told to drain.  Without the variable (the
program runs on its own, or the service sets control = false) every method
is a harmless no-op and ``agent.enabled`` is False.

http.server::

    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from socketnaut_agent import ServiceAgent

    agent = ServiceAgent()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            info = agent.peer_info(self)    # or self.connection
            client = info["remote"] if info else None
            ...

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    agent.attach_http_server(server)        # DRAIN stops it gracefully
    agent.ready(port=server.server_address[1])   # backend "agent"
    server.serve_forever()
    server.server_close()

  With the unix backend, listen on $SOCKETNAUT_SOCKET (a
  socketserver.UnixStreamServer subclass) and call ``agent.ready()`` once
  listening.  Call ready() only once the server listens: with backends
  other than "agent" it marks the worker ready at once.

WSGI (gunicorn): run one gunicorn worker per socketnautd worker
(``gunicorn --bind unix:{socket} --workers 1 app:app``; socketnautd is the
pool) and create the agent in the app module without --preload, so it lives
in the process that serves.  ``agent.peer_info(environ)`` uses
``environ["gunicorn.socket"]`` (or REMOTE_ADDR and REMOTE_PORT with a TCP
backend).
A DRAIN should stop the gunicorn arbiter, which then stops its worker
gracefully::

    agent = ServiceAgent()
    agent.ready()
    agent.on_drain(lambda: os.kill(os.getppid(), signal.SIGTERM),
                   send_drained=False)

asyncio::

    async def handle(reader, writer):
        info = await agent.peer_info_async(writer)   # writer, transport, socket
    ...
    agent.on_drain(async_stop)     # a coroutine function: run in the loop
                                   # that was running when on_drain was called

Peer-info keys: a relayed connection is identified by the address the worker
sees as its peer (the master's end): "HOST:PORT" or "[HOST6]:PORT" for TCP,
"@" + the abstract socket name for Unix sockets.  ``connection_key(obj)``
computes it from a socket, an http.server handler, an asyncio transport or
stream writer, a WSGI environ, a peer address tuple, or takes a ready key as
is.  A port alone is no key: the master answers it "unknown", as another
local user could connect from that port of another loopback address.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import os
import queue
import signal
import socket
import struct
import sys
import threading
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional,
                    Tuple, TypeVar, Union)

if TYPE_CHECKING:
    import logging
    import socketserver
    from typing import TypedDict

    class AddressInfo(TypedDict):
        """One end of a relayed connection, as the master saw it."""
        address: Optional[str]
        family: Optional[str]       # "IPv4" or "IPv6"
        port: Optional[int]

    class TLSInfo(TypedDict):
        """A client of a TLS service: what the master negotiated with it."""
        version: Optional[str]          # "TLSv1.3"
        cipher: Optional[str]
        sni: Optional[str]              # the server name it asked for
        alpn: Optional[str]             # the protocol chosen ("h2")
        client_subject: Optional[str]   # its certificate's subject (RFC 2253)
        client_verified: bool

    class PeerInfo(TypedDict, total=False):
        """remote: the client; local: the public address it reached;
        tls: only for a client of a service that terminates TLS."""
        remote: AddressInfo
        local: AddressInfo
        tls: TLSInfo
    # A pending query: [threading.Event, answer] or (loop, future).
    Slot = Union[List[Any], Tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]"]]

# A syslog level name ("info", "warning", ...) or number 0..7.
Level = Union[int, str]
_Callback = TypeVar("_Callback", bound=Callable[[], Any])
_Server = TypeVar("_Server", bound="socketserver.TCPServer")

__all__ = ["ServiceAgent", "HandedSocket", "connection_key", "encode_frame", "decode_frame",
           "parse_payload", "LEVELS"]

VERSION = 1
HEADER = 4
MAX_PAYLOAD = 4096

READY = 0x01
PEER_QUERY = 0x02
LOG = 0x03
DRAINED = 0x04
HELLO = 0x05
PEER_INFO = 0x81
DRAIN = 0x82
CLOSED = 0x06
HANDOFF = 0x83

HANDOFF_PENDING = 256   # handed connections not yet accepted: then the master waits

LEVELS = {
    "emerg": 0, "emergency": 0, "panic": 0,
    "alert": 1,
    "crit": 2, "critical": 2, "fatal": 2,
    "err": 3, "error": 3,
    "warning": 4, "warn": 4,
    "notice": 5,
    "info": 6, "information": 6,
    "debug": 7, "trace": 7,
}


class ProtocolError(Exception):
    """The master sent something this agent cannot read."""


# ---------------------------------------------------------------------------
# wire format

def _clean(value: object) -> str:
    """A field value: no control characters (they would end the field)."""
    value = str(value)
    return "".join(" " if ord(c) < 0x20 or ord(c) == 0x7f else c for c in value)


def encode_frame(msg_type: int, fields: Iterable[Tuple[str, object]] = (),
                 text: object = None) -> bytes:
    """One frame: header (version, type, 16-bit big-endian length) and the
    payload of key=value lines; `text`, if given, is the last field and is
    cut so that the payload stays within 4096 bytes."""
    lines = ["%s=%s" % (k, _clean(v)) for k, v in fields]
    payload = "\n".join(lines).encode("utf-8", "replace")
    if text is not None:
        head = payload + (b"\n" if payload else b"") + b"text="
        body = text if isinstance(text, bytes) else str(text).encode("utf-8", "replace")
        payload = head + body[:max(0, MAX_PAYLOAD - len(head))]
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload of %d bytes is over %d" % (len(payload), MAX_PAYLOAD))
    return struct.pack("!BBH", VERSION, msg_type, len(payload)) + payload


def parse_payload(payload: bytes) -> Dict[str, str]:
    """key=value lines (bytes) -> dict of str; a `text` field runs to the end."""
    fields: Dict[str, str] = {}
    rest = payload
    while rest:
        if rest.startswith(b"text="):
            fields["text"] = rest[5:].decode("utf-8", "replace")
            break
        line, sep, rest = rest.partition(b"\n")
        key, eq, value = line.partition(b"=")
        if not eq:
            raise ProtocolError("field without '=': %r" % line[:40])
        fields[key.decode("ascii", "replace")] = value.decode("utf-8", "replace")
    return fields


def decode_frame(buf: Union[bytes, bytearray]) -> Optional[Tuple[int, Dict[str, str], int]]:
    """(type, fields, bytes used) for the first complete frame of buf, or
    None if buf does not hold one yet.  Raises ProtocolError."""
    if len(buf) < HEADER:
        return None
    version, msg_type, length = struct.unpack("!BBH", bytes(buf[:HEADER]))
    if version != VERSION:
        raise ProtocolError("protocol version %d" % version)
    if length > MAX_PAYLOAD:
        raise ProtocolError("frame of %d bytes" % length)
    if len(buf) < HEADER + length:
        return None
    return msg_type, parse_payload(bytes(buf[HEADER:HEADER + length])), HEADER + length


# ---------------------------------------------------------------------------
# connection keys

def _tcp_key(host: object, port: Any) -> Optional[str]:
    if not isinstance(host, str) or not host or isinstance(port, bool):
        return None
    try:
        port = int(port)
    except (TypeError, ValueError):
        return None
    if not 0 < port < 65536:
        return None
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def _key_from_peername(peer: object) -> Optional[str]:
    if isinstance(peer, tuple) and len(peer) >= 2 and isinstance(peer[1], int):
        return _tcp_key(peer[0], peer[1])
    if isinstance(peer, bytes):
        if peer[:1] == b"\0" and len(peer) > 1:
            return "@" + peer[1:].decode("ascii", "replace")
        return None
    if isinstance(peer, str) and peer[:1] == "\0" and len(peer) > 1:
        return "@" + peer[1:]
    return None


def connection_key(obj: Any) -> Optional[str]:
    """The peer-info key of one accepted connection, or None if it has none.

    obj may be: a socket (also ssl.SSLSocket, asyncio's TransportSocket);
    an http.server / socketserver handler (its .connection or .request);
    an asyncio transport or StreamWriter (its "socket"/"peername" extra
    info); a WSGI environ (environ["gunicorn.socket"], else REMOTE_ADDR and
    REMOTE_PORT); a peer address as returned by getpeername(); a str key
    ("127.0.0.1:54321", "[::1]:54321", "@sn-1a65-1f-...").  An int (a port
    alone) has no key."""
    if obj is None or isinstance(obj, (bool, int)):
        return None
    if isinstance(obj, str):
        if obj[:1] == "\0":
            return _key_from_peername(obj)
        return obj or None
    if isinstance(obj, bytes):
        return _key_from_peername(obj)
    if isinstance(obj, tuple):
        return _key_from_peername(obj)
    if isinstance(obj, dict):                       # a WSGI environ
        for name in ("gunicorn.socket", "socketnaut.socket"):
            if obj.get(name) is not None:
                return connection_key(obj[name])
        return _tcp_key(obj.get("REMOTE_ADDR"), obj.get("REMOTE_PORT"))
    if hasattr(obj, "getpeername"):                 # a socket
        try:
            peer = obj.getpeername()
            if peer in ("", b"") and obj.family == socket.AF_UNIX:
                # The master left its end unnamed (we had not said hello yet).
                return "ino:%d" % os.fstat(obj.fileno()).st_ino
            return _key_from_peername(peer)
        except (OSError, ValueError, AttributeError):
            return None
    if hasattr(obj, "get_extra_info"):              # asyncio transport / StreamWriter
        sock = obj.get_extra_info("socket")
        if sock is not None:
            key = connection_key(sock)
            if key is not None:
                return key
        return _key_from_peername(obj.get_extra_info("peername"))
    for attr in ("connection", "request", "socket"):   # request handlers and the like
        inner = getattr(obj, attr, None)
        if inner is not None and inner is not obj and hasattr(inner, "getpeername"):
            return connection_key(inner)
    return None


def _level_number(level: Level) -> int:
    if isinstance(level, bool):
        raise ValueError("bad log level %r" % (level,))
    if isinstance(level, int):
        if 0 <= level <= 7:
            return level
        raise ValueError("log level %d is not 0..7" % level)
    name = str(level).strip().lower()
    if name.isdigit():
        return _level_number(int(name))
    if name in LEVELS:
        return LEVELS[name]
    raise ValueError("unknown log level %r" % (level,))


def _address_info(fields: Dict[str, str], side: str) -> AddressInfo:
    try:
        port: Optional[int] = int(fields.get(side + "_port", ""))
    except ValueError:
        port = None
    return {"address": fields.get(side + "_address"),
            "family": fields.get(side + "_family"),
            "port": port}


def _fd_of(conn: Any) -> Optional[int]:
    """The fd of a socket, handler, asyncio transport or StreamWriter."""
    if hasattr(conn, "get_extra_info"):
        conn = conn.get_extra_info("socket")
    elif not hasattr(conn, "fileno"):
        for attr in ("connection", "request"):
            inner = getattr(conn, attr, None)
            if inner is not None and hasattr(inner, "fileno"):
                conn = inner
                break
    try:
        fd = conn.fileno() if hasattr(conn, "fileno") else None
    except (OSError, ValueError):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


class HandedSocket(socket.socket):
    """A client connection the master handed to this worker (mode handoff).
    Its close is reported to the master, which counts the connection
    against this worker until then: close it (socketserver and asyncio do)
    rather than leave it to the garbage collector."""

    handoff_id: int = 0
    peer: Optional[PeerInfo] = None
    _agent: Optional[ServiceAgent] = None

    def _real_close(self, *args: Any, **kwargs: Any) -> None:
        agent, self._agent = self._agent, None
        fd = self.fileno()
        super()._real_close(*args, **kwargs)   # type: ignore[misc]
        if agent is not None:
            agent._handoff_closed(fd, self.handoff_id)


def _peer_info_dict(fields: Dict[str, str]) -> Optional[PeerInfo]:
    if fields.get("status") != "ok":
        return None
    result: PeerInfo = {"local": _address_info(fields, "local"),
                        "remote": _address_info(fields, "remote")}
    # A client of a TLS service: what the master negotiated with it.
    if "tls_version" in fields:
        result["tls"] = {"version": fields.get("tls_version"),
                         "cipher": fields.get("tls_cipher"),
                         "sni": fields.get("tls_sni"),
                         "alpn": fields.get("tls_alpn"),
                         "client_subject": fields.get("tls_client_subject"),
                         "client_verified": fields.get("tls_client_verified") == "1"}
    return result


# ---------------------------------------------------------------------------
# the agent

class ServiceAgent:
    """The worker's end of the control channel.

    ServiceAgent(fd=None): fd defaults to $SOCKETNAUT_CONTROL_FD; without
    it (or when the fd is not a socket) the agent is disabled and every
    method does nothing (peer_info returns None).  A background daemon
    thread reads the master's messages: peer-info replies (matched to their
    queries by id, so any number of threads may query at once) and DRAIN.
    """

    _instances: Dict[Tuple[int, int], ServiceAgent] = {}    # (pid, fd) -> its agent
    _instances_lock = threading.Lock()
    _initialized: bool

    def __new__(cls, fd: Optional[int] = None,
                env: Optional[Mapping[str, str]] = None) -> ServiceAgent:
        # One agent per channel and process: a second ServiceAgent() (another
        # module of the same program) shares the first one's reader thread.
        if fd is None:
            value = (os.environ if env is None else env).get("SOCKETNAUT_CONTROL_FD", "")
            fd = int(value) if value.strip().isdigit() else None
        with cls._instances_lock:
            agent = cls._instances.get((os.getpid(), fd)) if fd is not None else None
            if agent is None or getattr(agent, "_closed", False):
                agent = super().__new__(cls)
                agent._initialized = False
                if fd is not None:
                    cls._instances[(os.getpid(), fd)] = agent
            return agent

    def __init__(self, fd: Optional[int] = None,
                 env: Optional[Mapping[str, str]] = None) -> None:
        with self._instances_lock:
            if self._initialized:
                return
            self._initialized = True
        self.enabled = False
        self.draining = False
        self._sock: Optional[socket.socket] = None
        self.fd: Optional[int] = None
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pending: Dict[int, Slot] = {}     # id -> [Event, result] or (loop, future)
        self._ids = itertools.count(1)
        self._drain_callback: Optional[Callable[[], Any]] = None
        self._drain_loop: Optional[asyncio.AbstractEventLoop] = None
        self._send_drained = True
        self._drained_sent = False
        self._ready_sent = False
        self._closed = False
        self._server: Optional[socketserver.TCPServer] = None
        self._inflight = 0
        self._inflight_cv = threading.Condition()
        self._reader: Optional[threading.Thread] = None
        self._handoffs: queue.Queue[Tuple[int, int, Optional[PeerInfo]]] = \
            queue.Queue(HANDOFF_PENDING)
        self._handed: Dict[int, Optional[PeerInfo]] = {}   # fd -> its peers, while open
        self._handoff_loop_done: Optional[threading.Event] = None
        if fd is None:
            value = (os.environ if env is None else env).get("SOCKETNAUT_CONTROL_FD")
            if value is None or not value.strip().isdigit():
                return
            fd = int(value)
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            return
        if sock.family != socket.AF_UNIX:
            sock.detach()
            return
        try:
            os.set_inheritable(fd, False)   # not for programs this worker execs
        except OSError:
            pass
        sock.setblocking(True)
        self._sock = sock
        self.fd = fd
        self.enabled = True
        # Before the worker listens: the master names its connections for peer info.
        self._send(encode_frame(HELLO))
        self._reader = threading.Thread(target=self._read_loop, name="socketnaut-agent",
                                        daemon=True)
        self._reader.start()

    # -- sending ------------------------------------------------------------

    def _send(self, frame: bytes) -> bool:
        sock = self._sock
        if not self.enabled or self._closed or sock is None:
            return False
        try:
            with self._send_lock:
                sock.sendall(frame)
            return True
        except OSError:
            self._channel_lost()
            return False

    def ready(self, address: Union[str, bytes, Tuple[str, int], None] = None,
              port: Optional[int] = None) -> bool:
        """Tell the master this worker accepts connections.

        With backend "agent", say where: port=N (127.0.0.1:N) or address=
        "127.0.0.1:N", "[::1]:N", ("127.0.0.1", N), ("::1", N) or a Unix
        socket path ("/abs/path" or "unix:/abs/path").  With other backends
        the address is not needed (and ignored).  Only the first call counts."""
        if not self.enabled or self._ready_sent:
            return False
        fields: List[Tuple[str, object]] = []
        if port is not None:
            fields.append(("port", int(port)))
        elif address is not None:
            if isinstance(address, tuple):
                host, p = address[0], int(address[1])
                text = "[%s]:%d" % (host, p) if ":" in host else "%s:%d" % (host, p)
            elif isinstance(address, bytes):
                text = address.decode()
            else:
                text = address
            if text.startswith("/"):
                text = "unix:" + text
            fields.append(("address", text))
        self._ready_sent = True
        return self._send(encode_frame(READY, fields))

    def log(self, text: object, level: Level = "info") -> bool:
        """Write one line into the daemon's log, tagged with the service and
        this worker's pid.  level: syslog name (emerg .. debug, also error,
        warn, critical) or number 0..7.  The daemon logs no worker line above
        "error" and cuts lines at 1024 bytes."""
        if not self.enabled:
            return False
        return self._send(encode_frame(LOG, [("level", _level_number(level))], text=text))

    def log_handler(self, level: int = 0) -> logging.Handler:
        """A logging.Handler that forwards records to the daemon's log."""
        import logging

        agent = self

        class SocketnautHandler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                try:
                    msg = self.format(record)
                    n = record.levelno
                    lvl = (7 if n < logging.INFO else 6 if n < logging.WARNING else
                           4 if n < logging.ERROR else 3 if n < logging.CRITICAL else 2)
                    agent.log(msg, lvl)
                except Exception:       # a log handler must not raise
                    self.handleError(record)

        return SocketnautHandler(level)

    def drained(self) -> bool:
        """Tell the master that in-flight work is finished after a DRAIN
        (sent at most once; the default drain action sends it itself)."""
        if not self.enabled or self._drained_sent:
            return False
        self._drained_sent = True
        return self._send(encode_frame(DRAINED))

    # -- peer info ------------------------------------------------------------

    def peer_info(self, conn: Any, timeout: float = 5.0) -> Optional[PeerInfo]:
        """The real client of a relayed connection: {"remote": {"address",
        "family", "port"}, "local": {...}} (local = the public address the
        client connected to; family "IPv4" or "IPv6"), or None when it is
        unknown (not a relayed connection, already closed, agent disabled,
        no answer within `timeout` seconds).  Blocks; thread-safe.  A
        handed connection (mode handoff) is answered at once with what the
        master told when it handed it."""
        handed = self._handed_info(conn)
        if handed is not None:
            return handed
        key = connection_key(conn)
        if key is None or not self.enabled or self._closed:
            return None
        event = threading.Event()
        slot: List[Any] = [event, None]
        with self._lock:
            qid = next(self._ids)
            self._pending[qid] = slot
        try:
            if not self._send(encode_frame(PEER_QUERY, [("id", qid), ("key", key)])):
                return None
            event.wait(timeout)
            answer: Optional[PeerInfo] = slot[1]
            return answer
        finally:
            with self._lock:
                self._pending.pop(qid, None)

    async def peer_info_async(self, conn: Any, timeout: float = 5.0) -> Optional[PeerInfo]:
        """peer_info for asyncio code: conn may be a transport, a
        StreamWriter, a socket or a key.  Does not block the loop."""
        handed = self._handed_info(conn)
        if handed is not None:
            return handed
        key = connection_key(conn)
        if key is None or not self.enabled or self._closed:
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Optional[PeerInfo]] = loop.create_future()
        with self._lock:
            qid = next(self._ids)
            self._pending[qid] = (loop, future)
        try:
            frame = encode_frame(PEER_QUERY, [("id", qid), ("key", key)])
            # The send is small and the master always reads: do it inline.
            if not self._send(frame):
                return None
            try:
                return await asyncio.wait_for(future, timeout)
            except asyncio.TimeoutError:
                return None
        finally:
            with self._lock:
                self._pending.pop(qid, None)

    @staticmethod
    def _resolve(slot: Slot, value: Optional[PeerInfo]) -> None:
        if isinstance(slot, tuple):
            loop, future = slot

            def set_result() -> None:
                if not future.done():
                    future.set_result(value)
            try:
                loop.call_soon_threadsafe(set_result)
            except RuntimeError:        # the loop is closed
                pass
        else:
            slot[1] = value
            slot[0].set()

    # -- handoff ----------------------------------------------------------------

    def _handed_info(self, conn: Any) -> Optional[PeerInfo]:
        if isinstance(conn, HandedSocket):
            return conn.peer
        if not self._handed:
            return None
        fd = _fd_of(conn)
        return self._handed.get(fd) if fd is not None else None

    def accept(self, timeout: Optional[float] = None) -> Optional[Tuple[HandedSocket, Optional[PeerInfo]]]:
        """The next client connection the master handed this worker (a
        service in mode handoff): (socket, peer_info), or None when none
        came within `timeout` seconds (None: wait for one).  The socket is
        blocking; its close is reported to the master."""
        try:
            fd, hid, info = self._handoffs.get(timeout=timeout)
        except queue.Empty:
            return None
        sock = HandedSocket(fileno=fd)
        sock.handoff_id = hid
        sock.peer = info
        sock._agent = self
        sock.setblocking(True)
        self._handed[fd] = info
        return sock, info

    def _handoff_closed(self, fd: int, hid: int) -> None:
        self._handed.pop(fd, None)
        self._send(encode_frame(CLOSED, [("id", hid)]))

    def _accepted(self, timeout: Optional[float]) -> Optional[Tuple[HandedSocket, Optional[PeerInfo]]]:
        # After a drain request: only what was handed before it, no waiting.
        return self.accept(0 if self.draining else timeout)

    def serve_handoffs(self, server: _Server, poll_interval: float = 0.5) -> None:
        """Serve handed connections with a socketserver / http.server server
        (create it with bind_and_activate=False: it listens nowhere) until
        the master asks this worker to drain; then the connections handed
        before the request are served too, requests in progress finish,
        and DRAINED is sent (with the default drain action)."""
        if self._server is not server:
            self.attach_http_server(server)
        self._handoff_loop_done = threading.Event()
        try:
            while not self._closed:
                got = self._accepted(poll_interval)
                if got is None:
                    if self.draining:
                        break
                    continue
                sock, info = got
                remote = info["remote"] if info else None
                addr = (remote["address"], remote["port"]) if remote else sock.getpeername()
                try:
                    server.process_request(sock, addr)
                except Exception:
                    server.handle_error(sock, addr)
                    server.shutdown_request(sock)
        finally:
            self._handoff_loop_done.set()

    async def serve_handoffs_async(self, client_connected_cb: Callable[..., Any],
                                   poll_interval: float = 0.5) -> None:
        """asyncio: call client_connected_cb(reader, writer) (as
        asyncio.start_server does) for every handed connection, until the
        master asks this worker to drain (and those handed before that)."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            got = await loop.run_in_executor(None, self._accepted, poll_interval)
            if got is None:
                if self.draining:
                    return
                continue
            sock, _ = got
            sock.setblocking(False)
            reader = asyncio.StreamReader()
            protocol = asyncio.StreamReaderProtocol(reader, client_connected_cb)
            # On AbstractEventLoop's stubs only from Python 3.10; in every loop since 3.5.3.
            await loop.connect_accepted_socket(  # type: ignore[attr-defined]
                lambda: protocol, sock=sock)

    # -- drain ----------------------------------------------------------------

    def on_drain(self, callback: _Callback, send_drained: bool = True,
                 loop: Optional[asyncio.AbstractEventLoop] = None) -> _Callback:
        """Call `callback()` when the master asks this worker to drain,
        instead of the default drain().  It runs in a thread of its own (the
        process does not exit before it returns); a coroutine function runs
        in `loop` (default: the loop running when on_drain is called).
        When it returns, DRAINED is sent unless send_drained is False (then
        call agent.drained() yourself, or just exit)."""
        self._drain_callback = callback
        self._send_drained = send_drained
        if loop is None and inspect.iscoroutinefunction(callback):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        self._drain_loop = loop
        return callback

    def attach_http_server(self, server: _Server) -> _Server:
        """Let the default drain() stop this socketserver / http.server
        server: on DRAIN its serve_forever() loop is shut down, the listening
        socket closed, requests in progress are waited for, then DRAINED is
        sent.  The program's serve_forever() call returns; let the program
        end (the agent's drain thread keeps it alive until DRAINED is sent).
        Returns the server."""
        self._server = server
        agent = self
        process_request = server.process_request
        shutdown_request = server.shutdown_request

        def counting_process_request(request: Any, client_address: Any) -> None:
            with agent._inflight_cv:
                agent._inflight += 1
            return process_request(request, client_address)

        def counting_shutdown_request(request: Any) -> None:
            try:
                return shutdown_request(request)
            finally:
                with agent._inflight_cv:
                    agent._inflight -= 1
                    agent._inflight_cv.notify_all()

        setattr(server, "process_request", counting_process_request)
        setattr(server, "shutdown_request", counting_shutdown_request)
        return server

    def drain(self) -> None:
        """The default drain action.  With attach_http_server(): stop the
        server and wait for requests in progress.  Without a server: raise
        SIGTERM in this process (what the master would have sent), so the
        program's own SIGTERM handling applies."""
        server = self._server
        if server is None:
            self._send_drained = False
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if self._handoff_loop_done is not None:
            self._handoff_loop_done.wait()      # serve_handoffs() ends by itself
        else:
            server.shutdown()
        try:
            server.socket.close()
        except OSError:
            pass
        with self._inflight_cv:
            while self._inflight > 0:
                self._inflight_cv.wait(0.5)

    def _run_drain(self) -> None:
        try:
            callback = self._drain_callback
            if callback is None:
                self.drain()
            elif inspect.iscoroutinefunction(callback):
                loop = self._drain_loop
                if loop is None:
                    asyncio.run(callback())
                else:
                    future = asyncio.run_coroutine_threadsafe(callback(), loop)
                    while True:
                        try:
                            future.result(0.5)
                            break
                        except concurrent.futures.TimeoutError:
                            if loop.is_closed():
                                break
            else:
                callback()
        except Exception as e:          # report, then still tell the master
            self.log("drain: %s: %s" % (type(e).__name__, e), "error")
        if self._send_drained:
            self.drained()

    # -- reading ----------------------------------------------------------------

    def _dispatch(self, msg_type: int, fields: Dict[str, str],
                  fds: Optional[List[int]] = None) -> None:
        if msg_type == PEER_INFO:
            try:
                qid = int(fields.get("id", ""))
            except ValueError:
                return
            with self._lock:
                slot = self._pending.pop(qid, None)
            if slot is not None:
                self._resolve(slot, _peer_info_dict(fields))
        elif msg_type == HANDOFF:
            if not fds:
                raise ProtocolError("handoff without a descriptor")
            fd = fds.pop(0)
            try:
                hid = int(fields.get("id", ""))
            except ValueError:
                os.close(fd)
                raise ProtocolError("handoff without an id") from None
            info = _peer_info_dict(dict(fields, status="ok"))
            self._handoffs.put((fd, hid, info))     # blocks when full: the master waits
        elif msg_type == DRAIN:
            if self.draining:
                return
            self.draining = True
            # Not a daemon thread: the interpreter waits for it at exit, so
            # in-flight requests finish and DRAINED goes out before the end.
            threading.Thread(target=self._run_drain, name="socketnaut-drain",
                             daemon=False).start()
        # Other types: a newer master; ignore.

    def _read_loop(self) -> None:
        sock = self._sock
        if sock is None:
            return
        buf = bytearray()
        fds: List[int] = []     # came with handoff frames, not claimed yet
        anc = socket.CMSG_SPACE(8 * struct.calcsize("i"))
        try:
            while True:
                data, ancdata, flags, _ = sock.recvmsg(65536, anc, socket.MSG_CMSG_CLOEXEC)
                for level, kind, cdata in ancdata:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        n = len(cdata) // struct.calcsize("i")
                        fds.extend(struct.unpack("%di" % n, cdata[:n * struct.calcsize("i")]))
                if flags & socket.MSG_CTRUNC:
                    raise ProtocolError("descriptors lost (MSG_CTRUNC)")
                if not data:
                    break
                buf += data
                while True:
                    frame = decode_frame(buf)
                    if frame is None:
                        break
                    msg_type, fields, used = frame
                    del buf[:used]
                    self._dispatch(msg_type, fields, fds)
        except (OSError, ProtocolError) as e:
            if not self._closed:
                sys.stderr.write("socketnaut_agent: control channel: %s\n" % e)
        # EOF (the master is gone) or garbage: this channel is done.
        self._closed = True
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._channel_lost()

    def _channel_lost(self) -> None:
        self._closed = True
        with self._lock:
            pending, self._pending = self._pending, {}
        for slot in pending.values():
            self._resolve(slot, None)

    def close(self) -> None:
        """Close the channel (the agent is then disabled)."""
        if self._sock is not None and not self._closed:
            self._closed = True
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._channel_lost()
        self.enabled = False
