"""One client socket: its user, its rooms, and a bounded send buffer drained by one task.

Nothing in the fan-out path awaits a socket: `deliver` appends to the buffer and returns. A
client that cannot keep up fills its buffer and is closed with 4008, never slowing its room.
"""

import asyncio
import contextlib
import logging
import socket
import struct
from collections import deque
from typing import Any

from starlette.websockets import WebSocket

from services.common.contracts.errors import CloseCode
from services.common.contracts.models import UserRef

from .metrics import SLOW_CONSUMER_CLOSES

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 2.0


def _abort_transport(ws: WebSocket) -> None:
    transport = _find_transport(ws._send)
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0: close with a reset and free the kernel's buffers now. A plain close
        # would queue a FIN behind the data that the client never reads.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _find_transport(send: object, depth: int = 6) -> Any:
    """ASGI hides the transport: uvicorn's `send` is a method of its protocol, which
    Starlette's middleware wrap in closures. Follow them to the protocol's transport."""
    if depth == 0 or send is None:
        return None
    owner = getattr(send, "__self__", None)
    if owner is not None and hasattr(owner, "transport"):
        return owner.transport
    for cell in getattr(send, "__closure__", None) or ():
        try:
            inner = cell.cell_contents
        except ValueError:
            continue
        if callable(inner):
            found = _find_transport(inner, depth - 1)
            if found is not None:
                return found
    return None


class Connection:
    __slots__ = (
        "_closer",
        "_closing",
        "_holders",
        "_holding",
        "_queue",
        "_queued_bytes",
        "_wakeup",
        "closed",
        "conn_id",
        "inflight",
        "max_bytes",
        "max_frames",
        "rooms",
        "user",
        "user_json",
        "ws",
    )

    def __init__(
        self, ws: WebSocket, user: UserRef, conn_id: str, max_frames: int, max_bytes: int
    ) -> None:
        self.ws = ws
        self.user = user
        self.user_json = user.model_dump()
        self.conn_id = conn_id
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.rooms: set[str] = set()
        self.inflight = 0
        self.closed = False
        self._queue: deque[str] = deque()
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        # Rooms whose events wait until this socket has its snapshot (join / room.sync).
        self._holding: dict[str, list[str]] = {}
        # How many snapshot requests (join / room.sync) of this socket wait per room: events
        # are released only when the last one has replied, and a failed join leaves the room
        # only when no other join of it is under way.
        self._holders: dict[str, int] = {}
        self._closer: asyncio.Task[None] | None = None
        # (code, reason) to close with once the buffer is written (a graceful drain).
        self._closing: tuple[int, str] | None = None

    def send(self, text: str) -> None:
        if self.closed:
            return
        # str.isascii() is O(1) in CPython (a flag on the string): encode only when needed.
        size = len(text) if text.isascii() else len(text.encode())
        if len(self._queue) >= self.max_frames or self._queued_bytes + size > self.max_bytes:
            SLOW_CONSUMER_CLOSES.inc()  # services/gateway/metrics.py
            self.drop(CloseCode.SLOW_CONSUMER, "send buffer full")
            return
        self._queue.append(text)
        self._queued_bytes += size
        self._wakeup.set()

    def deliver(self, room: str, text: str) -> None:
        """A room event: held while the socket waits for that room's snapshot."""
        held = self._holding.get(room) if self._holding else None
        if held is not None:
            held.append(text)
        else:
            self.send(text)

    def hold(self, room: str) -> None:
        self._holding.setdefault(room, [])
        self._holders[room] = self._holders.get(room, 0) + 1

    def release(self, room: str) -> None:
        """One snapshot request is done; the held events go out after the last one."""
        left = self._holders.get(room, 0) - 1
        if left > 0:
            self._holders[room] = left
            return
        self._holders.pop(room, None)
        for text in self._holding.pop(room, ()):
            self.send(text)

    def holds(self, room: str) -> bool:
        """Whether a snapshot request for the room is still under way on this socket."""
        return room in self._holders

    def drop(self, code: int, reason: str) -> None:
        """Close from outside the writer (e.g. overflow): stop buffering, close soon."""
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        self._wakeup.set()
        log.info("closing %s: %s", self.conn_id, reason)
        # Keep a reference: the loop holds tasks weakly, and this one may wait seconds.
        self._closer = asyncio.get_running_loop().create_task(self._close(code, reason))

    def close_after_flush(self, code: int, reason: str) -> None:
        """Close once what is buffered (e.g. a `reconnect` frame) has been written."""
        if self.closed:
            return
        self._closing = (code, reason)
        self._wakeup.set()

    async def _close(self, code: int, reason: str) -> None:
        """Send a close frame; a client that reads nothing cannot receive it, so after
        CLOSE_WAIT_S the TCP connection is cut and its buffers freed."""
        try:
            await asyncio.wait_for(self.ws.close(code=code, reason=reason), CLOSE_WAIT_S)
        except Exception:
            _abort_transport(self.ws)

    async def writer(self) -> None:
        """Drain the buffer into the socket until the connection closes."""
        while not self.closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue and not self.closed:
                text = self._queue.popleft()
                self._queued_bytes -= len(text)
                await self.ws.send_text(text)
            if self._closing is not None and not self._queue:
                self.drop(*self._closing)
