"""The gateway's WebSocket server: one asyncio protocol per client socket, and no task.

uvicorn serves HTTP (FastAPI) and hands every upgrade request to this protocol (`Config(ws=
protocol_for(app))`). It speaks RFC 6455 through the `websockets` library's sans-I/O
`ServerProtocol`, and bypasses ASGI for `/ws` because ASGI costs a task, a queue, a receive
loop and middleware frames per socket, and a copy per send:

- frames are acted on in `data_received`, as they arrive (clients.received);
- room events are framed once and the same bytes are written straight to every member's
  socket (hub.py, connection.py): to a duplicate of its descriptor (`direct_fd`), or through
  its transport while that holds bytes unsent; no per-socket queue or writer task;
- the heartbeat is one timer per socket that alternates between "send a ping" and "the pong
  is late".

Measured with scripts/fanout.py (docs/performance.md): this is what lets one gateway process
reach 1,000 members in a few milliseconds and hold an idle socket in a few KB.
"""

import asyncio
import contextlib
import logging
import os
import resource
import socket
import struct
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol

from . import clients
from .connection import Connection
from .wire import text_frame

log = logging.getLogger(__name__)

# A close frame is answered within this, or the TCP connection is cut (a client that reads
# nothing would never see the close frame behind its unread data).
CLOSE_WAIT_S = 2.0
SOCKET_PATH = "/ws"
# Descriptors kept free of duplicates (direct_fd) for everything else the process opens.
FD_RESERVE = 1024


class DescriptorBudget:
    """How many duplicate descriptors (direct_fd) the process may hold: half of what its
    open-file limit leaves after FD_RESERVE, so duplicates never take the descriptors new
    sockets are accepted on. Past it a socket's events go through its transport."""

    def __init__(self) -> None:
        self.held = 0
        self.limit = 0
        self.refresh()

    def refresh(self) -> None:
        """Read the open-file limit again (after raise_open_file_limit)."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        soft = soft if soft != resource.RLIM_INFINITY else 1 << 20
        self.limit = max(0, (soft - FD_RESERVE) // 2)

    def take(self) -> bool:
        if self.held >= self.limit:
            return False
        self.held += 1
        return True

    def give_back(self) -> None:
        self.held -= 1


DESCRIPTORS = DescriptorBudget()


def raise_open_file_limit(cap: int = 1 << 20) -> int:
    """Raise this process's soft open-file limit to its hard one (at most `cap`): a socket
    costs a descriptor, two with its duplicate. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    DESCRIPTORS.refresh()
    return soft


class ClientSocket(asyncio.Protocol):
    """One client's socket. Subclassed per app by `protocol_for`, which sets the class
    attributes below (uvicorn builds protocols with its own arguments only)."""

    app: ClassVar[Any] = None
    max_size: ClassVar[int] = 1 << 20
    ping_interval_s: ClassVar[float] = 15.0
    pong_timeout_s: ClassVar[float] = 20.0

    __slots__ = (
        "_close_timer",
        "_fd",
        "_fragments",
        "_heartbeat",
        "_overflowed",
        "_ping_payload",
        "_response",
        "_server_state",
        "conn",
        "transport",
        "ws",
    )

    def __init__(
        self, config: Any, server_state: Any, app_state: Any = None, _loop: Any = None
    ) -> None:
        self._server_state = server_state
        self.transport: asyncio.Transport | None = None
        self.ws = ServerProtocol(max_size=self.max_size)
        self.conn: Connection | None = None
        self._fragments: list[bytes] | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._overflowed: Callable[[], None] | None = None
        self._response: Any = None  # the 101 to send once the socket is admitted
        self._fd = -1  # our duplicate of the socket's descriptor (direct_fd)

    # -- the transport's side --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._server_state.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.ws.receive_data(data)
        for event in self.ws.events_received():
            if isinstance(event, Frame):
                self._on_frame(event)
            elif isinstance(event, Request):
                self._on_request(event)
        self._flush()
        if self.ws.parser_exc is not None:
            # Too large, badly masked, bad UTF-8...: the library queued the close (1009,
            # 1002, 1007); nothing more will be read.
            self._end()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._server_state.connections.discard(self)
        for timer in (self._heartbeat, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._heartbeat = self._close_timer = None
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.stop_direct()
            clients.closed(self.app.state.gw, conn)
        # Only now, with no room left to write to it: a descriptor number closed earlier
        # could be reused by a new socket and get another socket's room events.
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
            DESCRIPTORS.give_back()

    def shutdown(self) -> None:
        """uvicorn's shutdown (after the gateway's drain): close what is still open."""
        if self.conn is not None:
            self.close(1012, "server restarting")
        elif self.transport is not None:
            self.transport.close()

    # -- connection.Socket: what the gateway's logic writes with -------------------------

    def write(self, frame: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame)

    def direct_fd(self) -> int:
        """A duplicate of the socket's descriptor for the room fan-out's direct writes
        (hub.RoomChannel._fan_out): a write per member with no transport in between costs
        1.2 µs less a socket at 1,000 members. A duplicate, so that its number stays ours
        until connection_lost even when the transport closes its own first. None under TLS
        (the bytes must go through the TLS layer) or when no descriptor is left."""
        if self._fd >= 0:
            return self._fd
        transport = self.transport
        if transport is None or transport.get_extra_info("sslcontext") is not None:
            return -1
        sock = transport.get_extra_info("socket")
        if sock is None or not DESCRIPTORS.take():
            return -1
        try:
            self._fd = os.dup(sock.fileno())
        except OSError:
            DESCRIPTORS.give_back()
            return -1
        return self._fd

    def buffered(self) -> int:
        assert self.transport is not None
        return self.transport.get_write_buffer_size()

    def bounded_writer(
        self, max_bytes: int, overflowed: Callable[[], None]
    ) -> Callable[[bytes], None]:
        """The transport's own write; past `max_bytes` unsent, the transport pauses this
        protocol (`pause_writing`), which calls `overflowed`."""
        assert self.transport is not None
        self._overflowed = overflowed
        self.transport.set_write_buffer_limits(high=max_bytes)
        return self.transport.write

    def pause_writing(self) -> None:
        if self._overflowed is not None:
            self._overflowed()

    def close(self, code: int, reason: str) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self.conn is not None:  # no room event may follow the close frame
            self.conn.mark_closed()
        with contextlib.suppress(InvalidState):
            self.ws.send_close(code, reason[:120])
        self._flush()
        if self._close_timer is None:
            self._close_timer = asyncio.get_running_loop().call_later(CLOSE_WAIT_S, self.abort)

    def abort(self) -> None:
        """Cut the connection with a reset, freeing the kernel's buffers now: a plain close
        would queue a FIN behind data the client never reads."""
        if self.transport is None:
            return
        if self.conn is not None:
            self.conn.stop_direct()
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    # -- the handshake -----------------------------------------------------------------------

    def _on_request(self, request: Request) -> None:
        response = self.ws.accept(request)
        if response.status_code != 101:  # not a valid WebSocket upgrade: 400, 426...
            self._respond(response)
            return
        url = urlsplit(request.path)
        if url.path != SOCKET_PATH:
            self._respond(self.ws.reject(404, "Not Found\n"))
            return
        token = (parse_qs(url.query).get("token") or [""])[0]
        self._response = response
        self.app.state.gw.spawn(
            self._admit(request.headers.get("Origin"), request.headers.get("Host"), token)
        )

    async def _admit(self, origin: str | None, host: str | None, token: str) -> None:
        gw = self.app.state.gw
        response = self._response
        self._response = None
        try:
            admitted = await clients.admit(gw, origin, host, token)
        except Exception:
            log.exception("socket admission failed")
            admitted = clients.Refusal(http_status=500)
        if self.transport is None or self.transport.is_closing():
            return  # the client gave up while its token was checked
        if isinstance(admitted, clients.Refusal) and admitted.http_status is not None:
            self._respond(self.ws.reject(admitted.http_status, "Refused\n"))
            return
        self.ws.send_response(response)
        self._flush()
        if isinstance(admitted, clients.Refusal):
            if admitted.first_frame is not None:
                self.write(text_frame(admitted.first_frame.encode()))
            self.close(admitted.close_code, admitted.reason)
            return
        user, claims = admitted
        self.conn = clients.opened(gw, self, user, claims)
        self._arm_ping(self.ping_interval_s)

    def _respond(self, response: Any) -> None:
        self.ws.send_response(response)
        self._flush()
        self._end()

    # -- frames ------------------------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._on_message(frame.data)
            else:
                self._fragments = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            if self._fragments is None:
                return  # the library refuses a stray continuation before we see it
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                data, self._fragments = b"".join(self._fragments), None
                self._on_message(data)
        elif opcode is Opcode.PONG:
            self._on_pong(bytes(frame.data))
        elif opcode is Opcode.CLOSE:
            # The library answered (or this was the answer to ours): the handshake is done.
            self._flush()
            self._end()
        # PING: the library queued the pong; `data_received` flushes it.

    def _on_message(self, data: bytes | bytearray | memoryview) -> None:
        if self.conn is not None:
            clients.received(self.app.state.gw, self.conn, bytes(data))

    # -- heartbeat ---------------------------------------------------------------------------

    def _arm_ping(self, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        self._heartbeat = loop.call_later(delay_s, self._ping)

    def _ping(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self._ping_payload = os.urandom(4)
        self.ws.send_ping(self._ping_payload)
        self._flush()
        self._heartbeat = asyncio.get_running_loop().call_later(
            self.pong_timeout_s, self._pong_missed
        )

    def _on_pong(self, payload: bytes) -> None:
        if self._ping_payload is None or payload != self._ping_payload:
            return  # unsolicited, or an answer to an older ping
        self._ping_payload = None
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        self._arm_ping(self.ping_interval_s)

    def _pong_missed(self) -> None:
        self._heartbeat = None
        log.info("closing %s: keepalive ping timeout", self.conn.conn_id if self.conn else "?")
        if self.conn is not None:
            self.conn.mark_closed()
        self.ws.fail(1011, "keepalive ping timeout")
        self._flush()
        self._end()

    # -- plumbing ----------------------------------------------------------------------------

    def _flush(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        wrote = False
        for data in self.ws.data_to_send():
            if data:
                self.transport.write(data)
                wrote = True
        if wrote and self.conn is not None:
            self.conn.note_queued()

    def _end(self) -> None:
        if self.conn is not None:
            self.conn.stop_direct()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def protocol_for(app: Any, max_size: int, ping_interval_s: float, pong_timeout_s: float) -> type:
    """uvicorn's `ws` protocol class for this app."""
    return type(
        "GatewaySocket",
        (ClientSocket,),
        {
            "__slots__": (),
            "app": app,
            "max_size": max_size,
            "ping_interval_s": ping_interval_s,
            "pong_timeout_s": pong_timeout_s,
        },
    )
