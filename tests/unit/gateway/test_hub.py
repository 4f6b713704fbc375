"""Room channels: events reach local members once each, in version order, gaps given up."""

import asyncio
import logging
from typing import Any

import orjson
import pytest

from services.common.contracts import subjects
from services.gateway.hub import MAX_PENDING_EVENTS, Hub, RoomChannel

ROOM = "AbC123"
WAIT_S = 0.05  # the reorder wait under test: short, so gap tests take a few tens of ms


class FakeConn:
    """Stands in for gateway.connection.Connection: records what the channel delivers."""

    def __init__(self) -> None:
        self.got: list[tuple[str, str]] = []
        self.closed = False
        self.holding = None
        self.direct = False  # no descriptor: every event through `push`
        self.fd = -1

    def push(self, frame: bytes) -> None:
        """The transport's write, taken by the fan-out for an open socket holding nothing."""
        self.deliver(ROOM, frame)

    def deliver(self, room: str, frame: str | bytes) -> None:
        # The hub hands over WebSocket frames (wire.text_frame) off the bus, and the test's
        # own events as they are; keep the JSON either way.
        if isinstance(frame, bytes):
            assert frame[0] == 0x81 and frame[1] < 126, "one small text frame"
            frame = frame[2:].decode()
        self.got.append((room, frame))

    @property
    def versions(self) -> list[int]:
        return [orjson.loads(text)["v"] for _room, text in self.got]


def event(v: int) -> str:
    return orjson.dumps({"type": "playback", "room": ROOM, "v": v, "data": {}}).decode()


def channel(*members: FakeConn, settled_at: int | None = 0) -> RoomChannel:
    ch = RoomChannel(ROOM, WAIT_S)
    for member in members:
        ch.add_member(member)  # type: ignore[arg-type]
    if settled_at is not None:
        ch.settle(settled_at)
    return ch


def send(ch: RoomChannel, *versions: int) -> None:
    for v in versions:
        ch.on_event(v, event(v))


# -- ordering ----------------------------------------------------------------------------------


async def test_in_order_events_are_delivered_at_once() -> None:
    conn = FakeConn()
    ch = channel(conn)
    send(ch, 1, 2, 3)
    assert conn.versions == [1, 2, 3]
    assert conn.got[0] == (ROOM, event(1))  # the publisher's bytes, forwarded as they are
    assert ch.next_v == 4
    assert ch.pending == {}
    assert ch._timer is None


async def test_early_events_are_held_until_the_missing_one_arrives() -> None:
    conn = FakeConn()
    ch = channel(conn)
    send(ch, 3, 2)
    assert conn.versions == []
    assert ch._timer is not None
    send(ch, 1)
    assert conn.versions == [1, 2, 3]
    assert ch._timer is None  # the gap closed: no give-up pending
    await asyncio.sleep(WAIT_S * 2)
    send(ch, 5)
    assert conn.versions == [1, 2, 3]  # a new gap waits its own full time


async def test_duplicates_and_old_events_are_dropped() -> None:
    conn = FakeConn()
    ch = channel(conn, settled_at=10)
    send(ch, 11, 11, 5, 10, 12, 11)
    assert conn.versions == [11, 12]


async def test_a_duplicate_of_a_held_event_is_delivered_once() -> None:
    conn = FakeConn()
    ch = channel(conn)
    send(ch, 2, 2, 1)
    assert conn.versions == [1, 2]


async def test_every_member_gets_every_event() -> None:
    a, b = FakeConn(), FakeConn()
    ch = channel(a, b)
    send(ch, 1, 2)
    late = FakeConn()
    ch.add_member(late)  # type: ignore[arg-type]
    send(ch, 3)
    assert a.versions == b.versions == [1, 2, 3]
    assert late.versions == [3]


async def test_nothing_is_delivered_to_a_channel_without_members() -> None:
    ch = channel()
    send(ch, 1, 2)
    assert ch.next_v == 3


# -- gaps --------------------------------------------------------------------------------------


async def test_a_gap_is_given_up_after_the_reorder_wait() -> None:
    conn = FakeConn()
    ch = channel(conn)
    send(ch, 2, 3)
    await asyncio.sleep(WAIT_S / 5)
    assert conn.versions == []
    await asyncio.sleep(WAIT_S * 2)
    assert conn.versions == [2, 3]
    assert ch.next_v == 4
    assert ch._timer is None
    send(ch, 1)  # it turned up after all: too late, clients have seen the gap
    assert conn.versions == [2, 3]


async def test_each_gap_waits_in_turn() -> None:
    conn = FakeConn()
    ch = channel(conn)
    send(ch, 3, 6)
    await asyncio.sleep(WAIT_S * 1.5)
    assert conn.versions == [3]
    assert ch.next_v == 4
    send(ch, 4)
    assert conn.versions == [3, 4]
    await asyncio.sleep(WAIT_S * 1.5)
    assert conn.versions == [3, 4, 6]
    assert ch.pending == {}
    assert ch._timer is None


async def test_too_many_held_events_give_the_gap_up_at_once() -> None:
    conn = FakeConn()
    ch = channel(conn)
    last = MAX_PENDING_EVENTS + 2
    send(ch, *range(2, last + 1))  # 1 never comes: MAX + 1 events wait
    assert conn.versions == list(range(2, last + 1))
    assert ch.next_v == last + 1


async def test_close_cancels_a_pending_give_up() -> None:
    conn = FakeConn()
    ch = channel(conn)
    send(ch, 2)
    ch.close()
    assert ch._timer is None
    await asyncio.sleep(WAIT_S * 2)
    assert conn.versions == []


# BUG: when more than MAX_PENDING_EVENTS wait, on_event calls give_up_gap() while a timer is
# armed; give_up_gap sets `_timer = None` without cancelling it. The orphaned timer still fires
# and gives up the next gap early (and close() can no longer cancel it).
async def test_an_overflow_does_not_leave_a_stray_timer() -> None:
    conn = FakeConn()
    ch = RoomChannel(ROOM, 0.2)
    ch.add_member(conn)  # type: ignore[arg-type]
    ch.settle(0)
    send(ch, 2)  # arms the give-up timer for the gap at 1
    send(ch, *range(3, MAX_PENDING_EVENTS + 3))  # overflow: the gap is given up at once
    await asyncio.sleep(0.12)
    gap_at = ch.next_v
    assert gap_at is not None
    send(ch, gap_at + 1)  # a new gap, which must be held for a full 0.2 s
    await asyncio.sleep(0.12)  # 0.24 s since the first timer was armed, 0.12 s since the gap
    try:
        assert ch.next_v == gap_at
        assert gap_at + 1 in ch.pending
    finally:
        ch.close()


# -- settling on a snapshot --------------------------------------------------------------------


async def test_events_before_the_snapshot_wait_for_it() -> None:
    conn = FakeConn()
    ch = channel(conn, settled_at=None)
    send(ch, 7, 8)
    assert conn.versions == []
    assert ch.next_v is None


async def test_settle_drops_what_the_snapshot_has_and_continues_after_it() -> None:
    conn = FakeConn()
    ch = channel(conn, settled_at=None)
    send(ch, 6, 7, 8, 9, 11)
    ch.settle(8)
    assert conn.versions == [9]
    assert ch.next_v == 10
    assert sorted(ch.pending) == [11]
    send(ch, 10)
    assert conn.versions == [9, 10, 11]
    assert ch._timer is None


async def test_settle_with_nothing_pending_starts_after_the_snapshot() -> None:
    conn = FakeConn()
    ch = channel(conn, settled_at=None)
    ch.settle(41)
    send(ch, 40, 41, 42)
    assert conn.versions == [42]


async def test_a_snapshot_read_after_the_sequence_started_does_not_count() -> None:
    conn = FakeConn()
    ch = channel(conn, settled_at=5)
    assert not ch.begin_read()  # a later member's snapshot: the sequence is already known
    assert ch.next_v == 6
    send(ch, 6)
    assert conn.versions == [6]


async def test_settle_cancels_the_wait_when_it_closes_every_gap() -> None:
    conn = FakeConn()
    ch = channel(conn, settled_at=None)
    send(ch, 5)
    ch.settle(4)
    assert conn.versions == [5]
    assert ch._timer is None


# BUG: the first snapshot to reply set where the sequence starts, and later ones were ignored.
# Joins under way together on a new channel reply in any order: one read at v2 replying after
# one read at v3 got its events from v4 on, and v3 never (seen in the scale-out benchmark).
async def test_the_sequence_starts_after_the_earliest_of_the_snapshots_under_way() -> None:
    conn = FakeConn()
    ch = channel(conn, settled_at=None)
    assert ch.begin_read() and ch.begin_read()
    send(ch, 2, 3)
    ch.settle(3)  # the first to reply
    assert conn.versions == []
    assert ch.next_v is None  # the other may have been read earlier
    ch.settle(2)
    assert conn.versions == [3]
    assert ch.next_v == 4


async def test_snapshots_begun_after_one_was_read_are_not_waited_for() -> None:
    conn = FakeConn()
    ch = channel(conn, settled_at=None)
    assert ch.begin_read() and ch.begin_read()
    ch.settle(5)
    assert not ch.begin_read()  # read after v5: it cannot start the sequence earlier
    send(ch, 5, 6, 7)
    ch.settle(6)
    assert conn.versions == [6, 7]


async def test_a_failed_snapshot_leaves_the_start_to_the_others() -> None:
    conn = FakeConn()
    ch = channel(conn, settled_at=None)
    assert ch.begin_read() and ch.begin_read()
    send(ch, 4, 5)
    ch.settle(4)
    ch.abandon_read()
    assert conn.versions == [5]
    assert ch.next_v == 6


async def test_when_every_snapshot_fails_the_next_one_starts_the_sequence() -> None:
    conn = FakeConn()
    ch = channel(conn, settled_at=None)
    assert ch.begin_read()
    send(ch, 3)
    ch.abandon_read()
    assert ch.next_v is None
    assert ch.begin_read()
    ch.settle(2)
    assert conn.versions == [3]


# BUG: the reorder wait ran before any snapshot was in: a join slower than `reorder_wait_s`
# (one busy core) had the channel start at its earliest held event, and the snapshot then
# could not place it; an event racing in after that was dropped as late.
async def test_events_wait_for_a_slow_snapshot_without_giving_up() -> None:
    conn = FakeConn()
    ch = channel(conn, settled_at=None)
    assert ch.begin_read()
    send(ch, 4)
    await asyncio.sleep(WAIT_S * 3)
    assert conn.versions == []
    assert ch.next_v is None
    ch.settle(2)  # v3 is still on its way: it is waited for as any gap
    assert conn.versions == []
    send(ch, 3)
    assert conn.versions == [3, 4]
    assert ch._timer is None


# -- the hub: node-local, reference-counted subscriptions --------------------------------------


class FakeSubscription:
    def __init__(self, subject: str, cb: Any) -> None:
        self.subject = subject
        self.cb = cb
        self.unsubscribed = False

    async def unsubscribe(self) -> None:
        self.unsubscribed = True


class FakeMsg:
    def __init__(self, subject: str, data: bytes) -> None:
        self.subject = subject
        self.data = data


class FakeNats:
    """The two calls Hub makes; `gate` lets a test hold a subscribe in flight."""

    def __init__(self) -> None:
        self.subs: list[FakeSubscription] = []
        self.flushes = 0
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def subscribe(self, subject: str, cb: Any) -> FakeSubscription:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        sub = FakeSubscription(subject, cb)
        self.subs.append(sub)
        return sub

    async def flush(self) -> None:
        self.flushes += 1


def hub() -> tuple[Hub, FakeNats]:
    nc = FakeNats()
    return Hub(nc, WAIT_S), nc  # type: ignore[arg-type]


async def test_the_first_member_subscribes_and_flushes() -> None:
    h, nc = hub()
    a = FakeConn()
    ch = await h.add(a, ROOM)  # type: ignore[arg-type]
    assert [s.subject for s in nc.subs] == [subjects.room_events(ROOM)]
    assert nc.flushes == 1  # the server knows the subscription before the snapshot is read
    assert ch.members == {a}
    assert ch.sub is nc.subs[0]
    assert h.room_count == 1


async def test_later_members_share_the_subscription() -> None:
    h, nc = hub()
    a, b = FakeConn(), FakeConn()
    first = await h.add(a, ROOM)  # type: ignore[arg-type]
    second = await h.add(b, ROOM)  # type: ignore[arg-type]
    assert first is second
    assert len(nc.subs) == 1
    assert first.members == {a, b}


async def test_the_last_member_leaving_unsubscribes() -> None:
    h, nc = hub()
    a, b = FakeConn(), FakeConn()
    await h.add(a, ROOM)  # type: ignore[arg-type]
    await h.add(b, ROOM)  # type: ignore[arg-type]
    await h.remove(a, ROOM)  # type: ignore[arg-type]
    assert not nc.subs[0].unsubscribed
    assert h.room_count == 1
    await h.remove(b, ROOM)  # type: ignore[arg-type]
    assert nc.subs[0].unsubscribed
    assert h.room_count == 0
    await h.remove(b, ROOM)  # type: ignore[arg-type]
    assert h.room_count == 0


async def test_rooms_are_counted_separately() -> None:
    h, nc = hub()
    a = FakeConn()
    await h.add(a, ROOM)  # type: ignore[arg-type]
    await h.add(a, "XyZ789")  # type: ignore[arg-type]
    assert h.room_count == 2
    assert {s.subject for s in nc.subs} == {
        subjects.room_events(ROOM),
        subjects.room_events("XyZ789"),
    }
    await h.remove(a, ROOM)  # type: ignore[arg-type]
    assert set(h.channels) == {"XyZ789"}


async def test_a_second_member_waits_until_the_subscription_is_in_place() -> None:
    h, nc = hub()
    nc.gate = asyncio.Event()
    a, b = FakeConn(), FakeConn()
    first = asyncio.create_task(h.add(a, ROOM))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    second = asyncio.create_task(h.add(b, ROOM))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert not first.done()
    assert not second.done()  # its snapshot must not be read before the subscription exists
    nc.gate.set()
    assert await first is await second
    assert len(nc.subs) == 1


async def test_bus_messages_reach_the_members_in_order() -> None:
    h, nc = hub()
    a = FakeConn()
    ch = await h.add(a, ROOM)  # type: ignore[arg-type]
    ch.settle(0)
    cb = nc.subs[0].cb
    subject = subjects.room_event(ROOM, "playback")
    for v in (2, 1, 3):
        await cb(FakeMsg(subject, event(v).encode()))
    assert a.versions == [1, 2, 3]


@pytest.mark.parametrize("data", [b"not json", b"{}", b'{"v": "x"}', b"[1]"])
async def test_a_bad_bus_message_is_logged_and_skipped(
    data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    h, nc = hub()
    a = FakeConn()
    ch = await h.add(a, ROOM)  # type: ignore[arg-type]
    ch.settle(0)
    with caplog.at_level(logging.ERROR, logger="services.gateway.hub"):
        await nc.subs[0].cb(FakeMsg(subjects.room_event(ROOM, "chat"), data))
    await nc.subs[0].cb(FakeMsg(subjects.room_event(ROOM, "chat"), event(1).encode()))
    assert a.versions == [1]
    assert any("bad room event" in r.message for r in caplog.records)


# BUG: Hub.add registers the channel (with the socket as a member) before it subscribes and
# does not undo that when subscribe raises (bus down, or a subject nats-py refuses such as a
# room code ending in "\n", see test_frames.py). The caller's join never adds the room to
# conn.rooms, so nothing ever removes the channel: it leaks with the connection in it.
async def test_a_failed_subscribe_leaves_no_channel_behind() -> None:
    h, nc = hub()
    nc.fail = ConnectionError("bus down")
    with pytest.raises(ConnectionError):
        await h.add(FakeConn(), ROOM)  # type: ignore[arg-type]
    assert h.room_count == 0
