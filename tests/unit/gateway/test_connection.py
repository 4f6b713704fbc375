"""A socket's sends: frames in order, the byte bound on the unread backlog, held room events."""

from collections.abc import Callable

import pytest

from services.common.contracts.errors import CloseCode
from services.common.contracts.models import UserRef
from services.gateway.connection import Connection
from services.gateway.hub import RoomChannel
from services.gateway.wire import text_frame

ROOM = "AbC123"
OTHER = "XyZ789"


class FakeSocket:
    """wsserver.ClientSocket's face: what was written, and a backlog the client has not read."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.backlog = 0  # bytes the transport holds because the client does not read
        self.closes: list[tuple[int, str]] = []
        self.stalled = False  # the client stopped reading: what is written stays buffered
        self.high: int | None = None  # the transport's bound, once bounded_writer set it
        self.overflowed: Callable[[], None] | None = None

    def write(self, frame: bytes) -> None:
        self.written.append(frame)
        if self.stalled:
            self.backlog += len(frame)

    def bounded_writer(
        self, max_bytes: int, overflowed: Callable[[], None]
    ) -> Callable[[bytes], None]:
        self.high, self.overflowed = max_bytes, overflowed
        return self._push

    def _push(self, frame: bytes) -> None:
        """As the transport does: write, then call back when the backlog passed the bound."""
        self.write(frame)
        if self.high is not None and self.backlog > self.high and self.overflowed is not None:
            self.overflowed()

    def buffered(self) -> int:
        return self.backlog

    def direct_fd(self) -> int:
        return -1  # every frame through `write`, where this fake records it

    def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))

    @property
    def texts(self) -> list[str]:
        return [_payload(f).decode() for f in self.written]


def _payload(frame: bytes) -> bytes:
    assert frame[0] == 0x81
    size = frame[1]
    return frame[2 + {126: 2, 127: 8}.get(size, 0) :]


def connection(max_bytes: int = 1024) -> tuple[Connection, FakeSocket]:
    sock = FakeSocket()
    return Connection(sock, UserRef(id="u1", name="Ann"), "gw-1:1", max_bytes), sock


def test_a_new_connection_is_open_and_empty() -> None:
    conn, sock = connection()
    assert not conn.closed
    assert conn.user_json == b'{"id":"u1","name":"Ann","admin":false}'
    assert conn.rooms == set()
    assert conn.inflight == 0
    assert sock.written == []


def test_frames_are_written_in_order_at_once() -> None:
    conn, sock = connection()
    for i in range(5):
        conn.send(f"f{i}")
    assert sock.texts == [f"f{i}" for i in range(5)]
    assert sock.closes == []


def test_a_shared_frame_is_written_as_it_is() -> None:
    conn, sock = connection()
    frame = text_frame(b'{"type":"playback"}')
    conn.deliver(ROOM, frame)
    assert sock.written[0] is frame  # framed once for the room, not per socket


# -- the bound -------------------------------------------------------------------------------


def test_a_backlog_past_the_bound_drops_a_slow_consumer() -> None:
    conn, sock = connection(max_bytes=100)
    sock.backlog = 90
    conn.send("12345")  # 7 bytes framed: 97, within the bound
    assert not conn.closed
    sock.backlog = 97
    conn.send("12345")
    assert conn.closed
    assert sock.closes == [(CloseCode.SLOW_CONSUMER, "send buffer full")]
    assert len(sock.written) == 1


def test_one_frame_over_the_bound_drops_at_once() -> None:
    conn, sock = connection(max_bytes=10)
    conn.send("x" * 11)
    assert conn.closed
    assert sock.closes == [(CloseCode.SLOW_CONSUMER, "send buffer full")]


def test_the_bound_counts_encoded_bytes() -> None:
    conn, _sock = connection(max_bytes=12)
    conn.send("😀😀😀")  # 3 characters, 12 bytes, 14 with the frame header
    assert conn.closed


def test_after_a_drop_sends_are_ignored_and_close_happens_once() -> None:
    conn, sock = connection(max_bytes=4)
    conn.send("abcdef")
    conn.send("b")
    conn.drop(CloseCode.GOING_AWAY, "again")
    conn.deliver(ROOM, text_frame(b"event"))
    assert sock.closes == [(CloseCode.SLOW_CONSUMER, "send buffer full")]
    assert sock.written == []


@pytest.mark.parametrize("code", [CloseCode.SLOW_CONSUMER, CloseCode.GOING_AWAY])
def test_drop_closes_with_the_given_code_after_what_was_sent(code: int) -> None:
    conn, sock = connection()
    conn.send("pending")
    conn.drop(code, "why")
    assert conn.closed
    assert sock.texts == ["pending"]
    assert sock.closes == [(code, "why")]


def test_close_after_flush_goes_after_the_frames_before_it() -> None:
    conn, sock = connection()
    conn.send("reconnect")
    conn.close_after_flush(CloseCode.SERVICE_RESTART, "server restarting")
    conn.send("too late")
    assert sock.texts == ["reconnect"]
    assert sock.closes == [(CloseCode.SERVICE_RESTART, "server restarting")]


# -- held room events --------------------------------------------------------------------------


def event(name: str) -> bytes:
    return text_frame(name.encode())


def test_held_events_follow_the_snapshot_reply() -> None:
    conn, sock = connection()
    conn.hold(ROOM)
    conn.deliver(ROOM, event("event 1"))
    conn.deliver(OTHER, event("other room"))  # only the held room waits
    conn.deliver(ROOM, event("event 2"))
    assert sock.texts == ["other room"]
    conn.send("snapshot reply")
    conn.release(ROOM)
    conn.deliver(ROOM, event("event 3"))
    assert sock.texts == ["other room", "snapshot reply", "event 1", "event 2", "event 3"]


def test_replies_are_not_held() -> None:
    conn, sock = connection()
    conn.hold(ROOM)
    conn.send("reply to another command")
    assert sock.texts == ["reply to another command"]
    conn.release(ROOM)


def test_holding_twice_keeps_what_was_held() -> None:
    conn, sock = connection()
    conn.hold(ROOM)
    conn.deliver(ROOM, event("e1"))
    conn.hold(ROOM)
    conn.deliver(ROOM, event("e2"))
    conn.release(ROOM)
    assert sock.texts == []  # the second snapshot request still waits
    assert conn.holds(ROOM)
    conn.send("snapshot-2")
    conn.release(ROOM)
    assert not conn.holds(ROOM)
    assert sock.texts == ["snapshot-2", "e1", "e2"]


def test_releasing_a_room_not_held_is_harmless() -> None:
    conn, sock = connection()
    conn.release(ROOM)
    conn.deliver(ROOM, event("e1"))
    assert sock.texts == ["e1"]
    assert not conn.holds(ROOM)


def test_held_events_count_against_the_bound_when_released() -> None:
    conn, sock = connection(max_bytes=30)
    conn.hold(ROOM)
    for i in range(10):
        conn.deliver(ROOM, event(f"e{i}"))  # 4 bytes each, framed
    assert not conn.closed
    sock.stalled = True  # the client reads nothing meanwhile
    conn.release(ROOM)
    assert conn.closed
    assert sock.texts == [f"e{i}" for i in range(7)]
    assert sock.closes == [(CloseCode.SLOW_CONSUMER, "send buffer full")]


# -- the room fan-out (hub.RoomChannel), which pushes past send_frame --------------------------


def fan_out(*conns: Connection) -> RoomChannel:
    channel = RoomChannel(ROOM, 0.05)
    for conn in conns:
        channel.add_member(conn)
    channel.settle(0)
    return channel


def room_event(v: int, size: int = 0) -> bytes:
    return text_frame(
        b'{"type":"playback","room":"%s","v":%d,"x":"%s"}' % (ROOM.encode(), v, b"x" * size)
    )


async def test_the_fan_out_pushes_one_frame_to_every_open_socket() -> None:
    (a, sock_a), (b, sock_b) = connection(), connection()
    fan_out(a, b).on_event(1, frame := room_event(1))
    assert sock_a.written == [frame] and sock_b.written == [frame]
    assert sock_a.written[0] is sock_b.written[0]  # framed once for the room


async def test_the_fan_out_holds_for_a_snapshot_and_skips_a_closed_socket() -> None:
    (waiting, sock_w), (gone, sock_g) = connection(), connection()
    gone.drop(CloseCode.GOING_AWAY, "bye")
    waiting.hold(ROOM)
    channel = fan_out(waiting, gone)
    channel.on_event(1, room_event(1))
    assert sock_w.written == [] and sock_g.written == []
    waiting.send("snapshot")
    waiting.release(ROOM)
    assert sock_w.texts[0] == "snapshot" and len(sock_w.written) == 2
    channel.on_event(2, room_event(2))  # pushed now that nothing is held
    assert len(sock_w.written) == 3 and sock_g.written == []


async def test_the_fan_out_drops_a_stalled_socket_once_past_its_bound() -> None:
    (slow, sock_s), (fine, sock_f) = connection(max_bytes=100), connection(max_bytes=100)
    sock_s.stalled = True
    channel = fan_out(slow, fine)
    for v in range(1, 6):
        channel.on_event(v, room_event(v, size=20))  # 59 bytes framed
    assert slow.closed
    assert sock_s.closes == [(CloseCode.SLOW_CONSUMER, "send buffer full")]
    assert len(sock_s.written) == 2  # 118 bytes: one frame past the bound, then no more
    assert len(sock_f.written) == 5 and not fine.closed
