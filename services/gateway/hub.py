"""Node-local room channels: one NATS subscription per room with local members.

A room is subscribed when its first local socket joins and unsubscribed when the last leaves
(STYLE.md point 7). Events are forwarded in version order: the services publish after their
transactions commit, so two publishers can race; a channel holds an early event until the
missing one arrives or `reorder_wait_s` passes (then clients see the gap and resync).

Where a new channel's sequence starts is learnt from its members' join snapshots: each is read
after the subscription, so every event after it arrives. Several joins can be under way when a
room's first local member joins, and the one that replies first need not have read earliest;
the channel starts after the earliest of them, so each gets every event after its own.
"""

import asyncio
import logging
import os
import time
from dataclasses import dataclass

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services.common.contracts import events, subjects
from services.common.stats import RateMeter

from . import metrics
from .connection import Connection
from .wire import text_frame

log = logging.getLogger(__name__)

MAX_PENDING_EVENTS = 1024  # per room; past it the oldest gap is given up on at once


@dataclass(slots=True)
class _Recipients:
    """A room's members as the fan-out writes to them, listed at `generation`."""

    generation: int
    fds: list[int]  # members whose events go straight to their descriptor
    by_fd: dict[int, Connection]
    others: list[Connection]  # through the transport: held, closing, or with bytes queued

    @staticmethod
    def of(members: set[Connection]) -> "_Recipients":
        fds: list[int] = []
        by_fd: dict[int, Connection] = {}
        others: list[Connection] = []
        for conn in members:
            if conn.direct:
                fds.append(conn.fd)
                by_fd[conn.fd] = conn
            else:
                others.append(conn)
        return _Recipients(Connection.generation, fds, by_fd, others)


class RoomChannel:
    __slots__ = (
        "_reads",
        "_recipients",
        "_start",
        "_timer",
        "code",
        "members",
        "next_v",
        "pending",
        "reorder_wait_s",
        "sub",
    )

    def __init__(self, code: str, reorder_wait_s: float) -> None:
        self.code = code
        self.members: set[Connection] = set()
        self.sub: Subscription | None = None
        # The version expected next; None until the first snapshot settles where we are.
        self.next_v: int | None = None
        self.pending: dict[int, bytes] = {}  # framed events waiting for an earlier one
        self.reorder_wait_s = reorder_wait_s
        self._timer: asyncio.TimerHandle | None = None
        # Snapshots under way that may start the sequence (`begin_read`), and the earliest
        # version one of them was read at so far.
        self._reads = 0
        self._start: int | None = None
        self._recipients: _Recipients | None = None

    def add_member(self, conn: Connection) -> None:
        self.members.add(conn)
        self._recipients = None

    def remove_member(self, conn: Connection) -> None:
        self.members.discard(conn)
        self._recipients = None

    def on_event(self, v: int, frame: bytes) -> None:
        if self.next_v is not None and v < self.next_v:
            return  # already delivered, or given up on after a gap
        self.pending[v] = frame
        self._drain()
        if len(self.pending) > MAX_PENDING_EVENTS:
            self.give_up_gap()
        else:
            self._arm()

    def _arm(self) -> None:
        """Wait `reorder_wait_s` for the missing version. Not before the sequence starts:
        until then events wait for a snapshot, not for a racing publisher."""
        if self.pending and self._timer is None and self.next_v is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.reorder_wait_s, self.give_up_gap)

    def begin_read(self) -> bool:
        """A member's snapshot is about to be read. True when it may start the sequence: no
        snapshot has been read yet, so this one may be read earlier than the first to reply.
        Pass True on to `settle`, or to `abandon_read` when the snapshot fails."""
        if self.next_v is not None or self._start is not None:
            return False  # later snapshots read at or after the one already in
        self._reads += 1
        return True

    def settle(self, snapshot_v: int) -> None:
        """A snapshot counted by `begin_read` was read at `snapshot_v`, after this channel
        subscribed: every later event reaches us. The sequence continues after the earliest
        of them, once all are in (a snapshot not counted is taken as the only one)."""
        if self._reads:
            self._reads -= 1
        self._start = snapshot_v if self._start is None else min(self._start, snapshot_v)
        self._start_sequence()

    def abandon_read(self) -> None:
        """A snapshot counted by `begin_read` failed: the others decide where to start."""
        if self._reads:
            self._reads -= 1
        self._start_sequence()

    def _start_sequence(self) -> None:
        if self.next_v is not None or self._start is None or self._reads:
            return
        self.next_v = self._start + 1
        for v in [v for v in self.pending if v <= self._start]:
            del self.pending[v]
        self._drain()
        self._arm()

    def _drain(self) -> None:
        if self.next_v is None:
            return
        while self.next_v in self.pending:
            self._fan_out(self.pending.pop(self.next_v))
            self.next_v += 1
        if not self.pending and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def give_up_gap(self) -> None:
        if self._timer is not None:
            self._timer.cancel()  # called early on overflow: the armed timer is stale
        self._timer = None
        if not self.pending:
            return
        # Before the sequence has started (an overflow while snapshots are read) this starts
        # it: members whose snapshot was read earlier see the jump in `v` and resync.
        self.next_v = min(self.pending)
        self._drain()
        self._arm()

    def _fan_out(self, frame: bytes) -> None:
        """The same bytes to every member, framed once. Most members get them by one `write`
        to their descriptor each, with no Python object of theirs touched: at 1,000 members
        the transports' writes cost 1.2 µs a socket more. A member that cannot take them
        that way (held for a snapshot, closing, or with bytes still queued in its
        transport, which a direct write would overtake) gets them through the transport."""
        started = time.perf_counter()
        recipients = self._recipients
        if recipients is None or recipients.generation != Connection.generation:
            recipients = self._recipients = _Recipients.of(self.members)
        size = len(frame)
        write = os.write
        for fd in recipients.fds:
            try:
                sent = write(fd, frame)
            except BlockingIOError:
                sent = 0
            except OSError:
                continue  # the peer is gone: the transport reads that and closes the socket
            if sent != size:
                _queue_rest(recipients.by_fd[fd], frame[sent:])
        code = self.code
        for conn in recipients.others:
            if conn.closed or conn.holding:
                conn.deliver(code, frame)  # held for a snapshot, or ignored once closed
            else:
                conn.push(frame)
                if conn.fd >= 0:
                    conn.note_queued()  # sent in the end: direct again from the next event
        metrics.FANOUT_SECONDS.observe(time.perf_counter() - started)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _queue_rest(conn: Connection, rest: bytes) -> None:
    """The kernel took part of a frame (a reader falling behind): the transport queues the
    rest, and the member's events go through it until it has caught up."""
    conn.push(rest)
    conn.note_queued()


def version_of(event: bytes) -> int:
    """An event's `v` without decoding it all (a member list can be 100 KB): events.encode
    writes `{"type":...,"room":...,"v":N,` first, so it is near the start."""
    start = event.find(b',"v":', 0, 96)
    if start != -1:
        end = event.find(b",", start + 5, start + 32)
        if end != -1:
            return int(event[start + 5 : end])
    return int(orjson.loads(event)["v"])


def _event_type(subject: str) -> str:
    """`st.room.<code>.evt.playback` → `playback` (event types are a closed set)."""
    kind = subject.rsplit(".", 1)[-1]
    return kind if kind in _EVENT_TYPES else "other"


_EVENT_TYPES = frozenset(events.EVENT_TYPES)


class Hub:
    def __init__(self, nc: NATS, reorder_wait_s: float) -> None:
        self.nc = nc
        self.reorder_wait_s = reorder_wait_s
        self.channels: dict[str, RoomChannel] = {}
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        self.events = RateMeter()  # room events received per second, for GET /api/stats

    async def add(self, conn: Connection, code: str) -> RoomChannel:
        """Add a socket to a room's channel, subscribing first if it is the first one."""
        channel = self.channels.get(code)
        if channel is None:
            channel = RoomChannel(code, self.reorder_wait_s)
            self.channels[code] = channel
            channel.add_member(conn)
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._subscribing[code] = ready
            try:
                channel.sub = await self.nc.subscribe(
                    subjects.room_events(code), cb=self._callback(channel)
                )
                # The server must know the subscription before the snapshot is read.
                await self.nc.flush()
            except BaseException:
                self.channels.pop(code, None)
                channel.close()
                raise
            finally:
                ready.set_result(None)
                self._subscribing.pop(code, None)
            return channel
        channel.add_member(conn)
        pending = self._subscribing.get(code)
        if pending is not None:
            await pending
        return channel

    def _callback(self, channel: RoomChannel):  # type: ignore[no-untyped-def]
        async def on_msg(msg: Msg) -> None:
            self.events.mark()
            metrics.FRAMES_SENT.labels(_event_type(msg.subject)).inc()
            try:
                channel.on_event(version_of(msg.data), text_frame(msg.data))
            except Exception:
                log.exception("bad room event on %s", msg.subject)

        return on_msg

    async def remove(self, conn: Connection, code: str) -> None:
        channel = self.channels.get(code)
        if channel is None:
            return
        channel.remove_member(conn)
        if not channel.members and code not in self._subscribing:
            del self.channels[code]
            channel.close()
            if channel.sub is not None:
                try:
                    await channel.sub.unsubscribe()
                except Exception:
                    log.warning("unsubscribe from %s failed", code)

    @property
    def room_count(self) -> int:
        return len(self.channels)

    def ask_resync(self) -> int:
        """After the bus came back: events published while this gateway was cut off are
        lost, and a room may have no later event to show the gap, so every local member is
        told to fetch a snapshot (`resync`); returns the frames sent."""
        sent = 0
        for code, channel in self.channels.items():
            frame = events.resync(code)
            for conn in channel.members:
                conn.send(frame)
                sent += 1
        return sent
