"""Evictions: a kicked or banned user's sockets on this gateway leave the room's channel, and
every socket in a closed room does."""

from types import SimpleNamespace
from typing import Any

import orjson

from services.common.contracts.envelope import EvictNotice
from services.common.contracts.events import EvictedFrame
from services.gateway.notices import evict

ROOM = "AbC123"


class FakeConn:
    def __init__(self, conn_id: str, *rooms: str) -> None:
        self.conn_id = conn_id
        self.rooms = set(rooms)
        self.sent: list[str] = []

    def send(self, text: str) -> None:
        self.sent.append(text)

    def holds(self, room: str) -> bool:
        return False  # no join under way (test_snapshot.py covers one that is)


class FakeHub:
    def __init__(self) -> None:
        self.removed: list[tuple[str, str]] = []

    async def remove(self, conn: FakeConn, room: str) -> None:
        self.removed.append((conn.conn_id, room))


def gateway(*conns: FakeConn) -> Any:
    return SimpleNamespace(connections=set(conns), hub=FakeHub())


async def test_the_named_sockets_leave_the_room_and_are_told_why() -> None:
    kicked = FakeConn("gw-a:1", ROOM, "Other1")
    remote = FakeConn("gw-a:2", ROOM)
    bystander = FakeConn("gw-a:3", ROOM)
    gw = gateway(kicked, remote, bystander)
    notice = EvictNotice(room=ROOM, user_id="u2", conns=["gw-a:1", "gw-a:2"], reason="kicked")

    assert await evict(gw, notice) == 2
    assert kicked.rooms == {"Other1"}, "only this room"
    assert remote.rooms == set()
    assert bystander.rooms == {ROOM}
    assert sorted(gw.hub.removed) == [("gw-a:1", ROOM), ("gw-a:2", ROOM)]
    for conn in (kicked, remote):
        (frame,) = conn.sent
        parsed = EvictedFrame.model_validate(orjson.loads(frame))
        assert (parsed.room, parsed.data.reason) == (ROOM, "kicked")
    assert bystander.sent == []


async def test_sockets_of_other_gateways_or_rooms_are_left_alone() -> None:
    elsewhere = FakeConn("gw-a:1", "Other1")  # already left this room
    gw = gateway(elsewhere)
    notice = EvictNotice(room=ROOM, user_id="u2", conns=["gw-a:1", "gw-b:7"], reason="banned")
    assert await evict(gw, notice) == 0
    assert elsewhere.sent == [] and gw.hub.removed == []


async def test_a_closed_rooms_notice_takes_every_socket_out_of_that_room_only() -> None:
    ann = FakeConn("gw-a:1", ROOM, "Other1")
    bob = FakeConn("gw-a:2", ROOM)
    elsewhere = FakeConn("gw-a:3", "Other1")
    gw = gateway(ann, bob, elsewhere)
    notice = EvictNotice(room=ROOM, reason="closed")  # names nobody: everyone in the room

    assert await evict(gw, notice) == 2
    assert (ann.rooms, bob.rooms, elsewhere.rooms) == ({"Other1"}, set(), {"Other1"})
    assert sorted(gw.hub.removed) == [("gw-a:1", ROOM), ("gw-a:2", ROOM)]
    for conn in (ann, bob):
        (frame,) = conn.sent
        assert orjson.loads(frame) == {
            "type": "evicted",
            "room": ROOM,
            "data": {"reason": "closed"},
        }
    assert elsewhere.sent == []
