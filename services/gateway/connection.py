"""One client socket as the gateway's logic sees it: its user, its rooms, and its sends.

Nothing in the fan-out path awaits a socket: a frame is written to the socket's transport at
once (the kernel takes it, or the transport buffers it). A client that does not read fills its
buffer past `max_bytes` and is closed with 4008, never slowing its room.

A room event is written straight to the socket's descriptor (`fd`, hub.RoomChannel._fan_out)
while the socket can take it that way: open, holding no events for a snapshot, and with
nothing waiting unsent in its transport. Any change to those (`changed`) makes every room
list its members again before its next event. Otherwise an event goes through `push`, the
transport's own write. The bound still holds, checked by the transport: past `max_bytes` it
calls back (`overflowed`), so an event can take a backlog past the bound by one frame
before the socket is dropped.
"""

import logging
from collections.abc import Callable
from typing import Protocol

from services.common.contracts.errors import CloseCode
from services.common.contracts.models import UserRef

from .metrics import SLOW_CONSUMER_CLOSES
from .ratelimit import TokenBucket
from .wire import text_frame

log = logging.getLogger(__name__)


class Socket(Protocol):
    """The transport side of a client socket (wsserver.ClientSocket)."""

    def write(self, frame: bytes) -> None: ...

    def buffered(self) -> int: ...

    def direct_fd(self) -> int:
        """A descriptor of the socket's own that room events may be written to directly,
        valid until the socket is gone; -1 for none (wsserver.ClientSocket.direct_fd)."""
        ...

    def close(self, code: int, reason: str) -> None: ...

    def bounded_writer(
        self, max_bytes: int, overflowed: Callable[[], None]
    ) -> Callable[[bytes], None]:
        """A write with no check on the way; `overflowed` is called once more than
        `max_bytes` wait unsent."""
        ...


class Connection:
    # Bumped whenever a socket's way of taking room events changes (open, holding, queued,
    # its descriptor); a room lists its members' descriptors again when it has moved.
    generation = 0

    __slots__ = (
        "_evicted",
        "_holders",
        "bucket",
        "closed",
        "conn_id",
        "expiry",
        "fd",
        "holding",
        "inflight",
        "max_bytes",
        "push",
        "queued",
        "rooms",
        "sid",
        "socket",
        "user",
        "user_json",
    )

    def __init__(
        self,
        socket: Socket,
        user: UserRef,
        conn_id: str,
        max_bytes: int,
        bucket: TokenBucket | None = None,
        sid: str = "",
    ) -> None:
        self.socket = socket
        self.user = user
        # Spliced into every command envelope this socket sends (commands.py).
        self.user_json = user.model_dump_json().encode()
        self.conn_id = conn_id
        self.max_bytes = max_bytes
        self.bucket = bucket
        self.sid = sid
        self.rooms: set[str] = set()
        self.inflight = 0
        self.closed = False
        self.expiry: object | None = None  # the token-expiry timer (asyncio.TimerHandle)
        # Rooms whose events wait until this socket has its snapshot (join / room.sync); the
        # room fan-out pushes straight to the socket only while this is empty.
        self.holding: dict[str, list[bytes]] | None = None
        # How many snapshot requests (join / room.sync) of this socket wait per room: events
        # are released only when the last one has replied, and a failed join leaves the room
        # only when no other join of it is under way.
        self._holders: dict[str, int] | None = None
        # Rooms this socket was evicted from while a join of them was under way: that join
        # is refused when its snapshot is read (notices.evict).
        self._evicted: set[str] | None = None
        # A room event for an open socket that holds none (hub.py): the transport's write.
        self.push = socket.bounded_writer(max_bytes, self._overflowed)
        # Room events go to this descriptor while `direct` holds (hub.RoomChannel._fan_out).
        self.fd = socket.direct_fd()
        # The transport holds bytes not yet sent: a direct write would overtake them.
        self.queued = False
        Connection.changed()

    @staticmethod
    def changed() -> None:
        Connection.generation += 1

    @property
    def direct(self) -> bool:
        """Whether a room event may go straight to `fd`, in order after what was sent."""
        return self.fd >= 0 and not self.closed and not self.holding and not self.queued

    def mark_closed(self) -> None:
        if not self.closed:
            self.closed = True
            Connection.changed()

    def stop_direct(self) -> None:
        """The descriptor is about to close, or the socket to close: no more direct writes."""
        if self.fd >= 0:
            self.fd = -1
            Connection.changed()

    def note_queued(self) -> None:
        """After a write through the transport: did it keep bytes back (a slow reader)?"""
        queued = self.socket.buffered() > 0
        if queued != self.queued:
            self.queued = queued
            Connection.changed()

    def send(self, text: str | bytes) -> None:
        """One frame for this socket alone (a reply, a notice)."""
        self.send_frame(text_frame(text.encode() if isinstance(text, str) else text))

    def send_frame(self, frame: bytes) -> None:
        """An encoded WebSocket frame, possibly shared by every member of a room."""
        if self.closed:
            return
        if self.socket.buffered() + len(frame) > self.max_bytes:
            self._overflowed()
            return
        self.socket.write(frame)
        self.note_queued()

    def _overflowed(self) -> None:
        SLOW_CONSUMER_CLOSES.inc()  # services/gateway/metrics.py
        self.drop(CloseCode.SLOW_CONSUMER, "send buffer full")

    def deliver(self, room: str, frame: bytes) -> None:
        """A room event: held while the socket waits for that room's snapshot."""
        held = self.holding.get(room) if self.holding else None
        if held is not None:
            held.append(frame)
        else:
            self.send_frame(frame)

    def hold(self, room: str) -> None:
        if self.holding is None or self._holders is None:
            self.holding, self._holders = {}, {}
        if not self.holding:
            Connection.changed()
        self.holding.setdefault(room, [])
        self._holders[room] = self._holders.get(room, 0) + 1

    def release(self, room: str, deliver: bool = True) -> None:
        """One snapshot request is done; the held events go out after the last one, unless
        `deliver` is false (a join that failed: the socket is no member of the room)."""
        if self._holders is None or self.holding is None:
            return
        left = self._holders.get(room, 0) - 1
        if left > 0:
            self._holders[room] = left
            return
        self._holders.pop(room, None)
        if self._evicted is not None:
            self._evicted.discard(room)
        held = self.holding.pop(room, ())
        if not self.holding:
            Connection.changed()
        if deliver:
            for frame in held:
                self.send_frame(frame)

    def evicted_while_joining(self, room: str) -> None:
        if self._evicted is None:
            self._evicted = set()
        self._evicted.add(room)

    def evicted_from(self, room: str) -> bool:
        """Whether the socket was evicted from `room` while a join of it was under way
        (until the last snapshot request of the room is done)."""
        return self._evicted is not None and room in self._evicted

    def holds(self, room: str) -> bool:
        """Whether a snapshot request for the room is still under way on this socket."""
        return self._holders is not None and room in self._holders

    def drop(self, code: int, reason: str) -> None:
        """Close: a close frame after what is written already; a client that reads nothing
        never gets it, and the socket is then cut (wsserver.CLOSE_WAIT_S)."""
        if self.closed:
            return
        self.mark_closed()
        log.info("closing %s: %s", self.conn_id, reason)
        self.socket.close(code, reason)

    def close_after_flush(self, code: int, reason: str) -> None:
        """Close once what is buffered (e.g. a `reconnect` frame) has been written: writes
        are ordered, so the close frame simply goes after it."""
        self.drop(code, reason)
