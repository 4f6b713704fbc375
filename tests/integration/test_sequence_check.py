"""Rooms' `sequence_check` on real PostgreSQL: a room whose committed events never went out
(the publisher failed between its commit and its publish) gets a `resync` event after them;
a room whose events all went out gets nothing."""

import asyncio

import orjson
import pytest

from services.common import bus as bus_module
from services.common import sequencer
from services.common.contracts import events, subjects
from services.common.contracts.commands import Seek
from services.common.contracts.envelope import RoomVersions, SequenceCheck, SequenceCheckReply
from services.common.contracts.errors import ErrorCode, ServiceError
from services.rooms.handlers import build_router
from services.rooms.service import RoomsService
from tests.support.rooms_service import Bus, env, loaded, new_room, user

pytestmark = pytest.mark.integration


async def version(rooms: RoomsService, code: str) -> int:
    async with rooms.engine.connect() as conn:
        v = await sequencer.current(conn, code)
    assert v is not None
    return v


async def test_a_room_whose_events_all_went_out_is_left_alone(
    rooms_bus: tuple[RoomsService, Bus],
) -> None:
    rooms, bus = rooms_bus
    code = await new_room(rooms, user("ann"))
    v = await version(rooms, code)
    published = len(bus.published)
    reply = await rooms.check_sequence(SequenceCheck(room=code, seen_v=v, resync=True))
    assert reply == SequenceCheckReply(v=v, resynced=False)
    assert len(bus.published) == published
    assert await version(rooms, code) == v


async def test_events_committed_and_never_published_are_followed_by_a_resync(
    rooms_bus: tuple[RoomsService, Bus],
) -> None:
    """What a gateway's check finds after a publisher died between its commit and its
    publish: the room's version past what the gateway delivered."""
    rooms, bus = rooms_bus
    code = await new_room(rooms, user("ann"))
    seen = await version(rooms, code)
    async with rooms.engine.begin() as conn:
        lost = await sequencer.bump(conn, code)  # a commit whose events never went out
    published = len(bus.published)
    # Asked without `resync`: the version only (the gateway then waits for its events).
    reply = await rooms.check_sequence(SequenceCheck(room=code, seen_v=seen))
    assert reply == SequenceCheckReply(v=lost, resynced=False)
    assert len(bus.published) == published
    reply = await rooms.check_sequence(SequenceCheck(room=code, seen_v=seen, resync=True))
    assert reply == SequenceCheckReply(v=lost + 1, resynced=True)
    (subject, payload) = bus.published[-1]
    assert subject == events.subject_for("resync", code)
    assert orjson.loads(payload) == {
        "type": "resync",
        "room": code,
        "v": lost + 1,
        "data": {"reason": "events_lost"},
    }
    assert await version(rooms, code) == lost + 1


async def test_a_publish_that_fails_after_the_commit_is_repaired_by_rooms(
    rooms_bus: tuple[RoomsService, Bus], monkeypatch: pytest.MonkeyPatch
) -> None:
    rooms, bus = rooms_bus
    rooms.repair_waits_s = (0.05, 0.05, 0.05)
    ann = user("ann")
    code = await loaded(rooms, ann)
    seen = await version(rooms, code)
    failures = 0
    publish = bus.publish

    async def bus_away(subject: str, payload: bytes, headers: object = None) -> None:
        nonlocal failures
        if failures < 2:  # the seek's event, then the first repair's resync
            failures += 1
            raise ConnectionError("the bus is away")
        await publish(subject, payload)

    monkeypatch.setattr(bus, "publish", bus_away)
    # Committed: answered as such, though its event did not go out.
    reply = await rooms.seek(env(ann, code), Seek(position_ms=30_000))
    assert reply["playback"]["position_ms"] == 30_000
    lost = await version(rooms, code)
    assert lost == seen + 1
    for _ in range(100):
        if bus.published and orjson.loads(bus.published[-1][1])["type"] == "resync":
            break
        await asyncio.sleep(0.02)
    assert failures == 2
    # The first try's resync (v lost + 1) was lost too: the second one goes after it.
    resync = orjson.loads(bus.published[-1][1])
    assert (resync["type"], resync["v"], resync["data"]) == (
        "resync",
        lost + 2,
        {"reason": "events_lost"},
    )
    # The room's sequence goes on after it.
    await rooms.seek(env(ann, code), Seek(position_ms=40_000))
    playback = orjson.loads(bus.published[-1][1])
    assert (playback["type"], playback["v"]) == ("playback", lost + 3)


async def test_a_closed_room_is_not_found(rooms_bus: tuple[RoomsService, Bus]) -> None:
    rooms, _bus = rooms_bus
    with pytest.raises(ServiceError) as refused:
        await rooms.check_sequence(SequenceCheck(room="zzzzzz", seen_v=0))
    assert refused.value.code == ErrorCode.NOT_FOUND


async def test_versions_name_each_open_room_committed_version(
    rooms_bus: tuple[RoomsService, Bus],
) -> None:
    """What a gateway's sweep asks (services/gateway/sequencesweep.py): each room's committed
    version, through the router as the bus delivers it; a closed room is left out."""
    rooms, bus = rooms_bus
    quiet, lost = await new_room(rooms, user("ann")), await new_room(rooms, user("bob"))
    async with rooms.engine.begin() as conn:
        behind = await sequencer.bump(conn, lost)  # committed, never published
    published = len(bus.published)
    query = RoomVersions(rooms=[quiet, lost, "zzzzzz"])
    reply = orjson.loads(
        await build_router(rooms).dispatch(
            subjects.command("rooms", "versions"),
            bus_module.internal_envelope(query).model_dump_json(),
        )
    )
    assert reply == {
        "ok": True,
        "data": {"versions": {quiet: await version(rooms, quiet), lost: behind}},
    }
    assert len(bus.published) == published  # asking publishes nothing
    # Only services may ask: a user's envelope is refused.
    refused = orjson.loads(
        await build_router(rooms).dispatch(
            subjects.command("rooms", "versions"),
            env(user("ann"), None, "gwA:1")
            .model_copy(update={"data": query.model_dump()})
            .model_dump_json(),
        )
    )
    assert refused["ok"] is False and refused["error"]["code"] == "forbidden"
