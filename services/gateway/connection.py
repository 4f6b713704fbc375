"""One client socket: its user, its rooms, and a bounded send buffer drained by one task.

Nothing in the fan-out path awaits a socket: `deliver` appends to the buffer and returns. A
client that cannot keep up fills its buffer and is closed with 4008, never slowing its room.
"""

import asyncio
import contextlib
import logging
from collections import deque

from starlette.websockets import WebSocket

from services.common.contracts.errors import CloseCode
from services.common.contracts.models import UserRef

log = logging.getLogger(__name__)


class Connection:
    __slots__ = (
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

    def send(self, text: str) -> None:
        if self.closed:
            return
        size = len(text)
        if len(self._queue) >= self.max_frames or self._queued_bytes + size > self.max_bytes:
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

    def release(self, room: str) -> None:
        for text in self._holding.pop(room, ()):
            self.send(text)

    def drop(self, code: int, reason: str) -> None:
        """Close from outside the writer (e.g. overflow): stop buffering, close soon."""
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        self._wakeup.set()
        log.info("closing %s: %s", self.conn_id, reason)
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, reason=reason)

    async def writer(self) -> None:
        """Drain the buffer into the socket until the connection closes."""
        while not self.closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue and not self.closed:
                text = self._queue.popleft()
                self._queued_bytes -= len(text)
                await self.ws.send_text(text)
