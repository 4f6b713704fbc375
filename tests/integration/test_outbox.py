"""Rooms' evictions are kept in an outbox until sent (services/rooms/outbox.py): no resync
takes a kicked user's sockets out of a room, so a notice whose publish failed, or whose
replica died before publishing it, is sent by any replica's sweep, on real PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.contracts import subjects
from services.common.contracts.envelope import CommandEnvelope
from services.rooms import outbox
from services.rooms.handlers import build_router
from services.rooms.models import RoomNotice
from services.rooms.service import RoomsService
from tests.support.rooms_service import Bus, env, new_room, rooms_service, user

pytestmark = pytest.mark.integration

EVICT = subjects.gateway_notice("evict")


@pytest_asyncio.fixture
async def replica(engine: AsyncEngine) -> AsyncIterator[tuple[RoomsService, Bus]]:
    """A second rooms replica on the same database, with a bus of its own."""
    rooms, bus = rooms_service(engine)
    yield rooms, bus
    await rooms.aclose()


def notices_of(bus: Bus, room: str) -> list[dict[str, Any]]:
    return [n for s, p in bus.published if s == EVICT and (n := orjson.loads(p))["room"] == room]


async def call(
    rooms: RoomsService, command: str, envelope: CommandEnvelope, data: dict[str, Any] | None = None
) -> Any:
    """A command as the bus delivers it to rooms: the raw reply, decoded."""
    raw = envelope.model_copy(update={"data": data or {}}).model_dump_json()
    return orjson.loads(await build_router(rooms).dispatch(subjects.command("rooms", command), raw))


async def kept(rooms: RoomsService, room: str) -> list[str]:
    """The notices about `room` still in the outbox."""
    async with rooms.engine.connect() as conn:
        rows = await conn.execute(select(RoomNotice.payload))
    return [p for (p,) in rows if orjson.loads(p)["room"] == room]


async def until_empty(rooms: RoomsService, room: str) -> None:
    for _ in range(100):
        if not await kept(rooms, room):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"notices about {room} still kept: {await kept(rooms, room)}")


def refusing_notices(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The bus refuses every notice from now on (a replica about to die, or cut off)."""
    publish, refused = bus.publish, []

    async def refuse(subject: str, payload: bytes, headers: object = None) -> None:
        if subject == EVICT:
            refused.append(payload)
            raise ConnectionError("the bus refused it")
        await publish(subject, payload)

    monkeypatch.setattr(bus, "publish", refuse)
    return refused


async def test_a_sent_notice_leaves_the_outbox(rooms_bus: tuple[RoomsService, Bus]) -> None:
    rooms, bus = rooms_bus
    owner, guest = user("owner"), user("guest")
    code = await new_room(rooms, owner)
    assert (await call(rooms, "join", env(guest, code, "gwA:7")))["ok"]
    assert (await call(rooms, "kick", env(owner, code, "gwA:1"), {"user_id": guest.id}))["ok"]
    assert [(n["conns"], n["reason"]) for n in notices_of(bus, code)] == [(["gwA:7"], "kicked")]
    await until_empty(rooms, code)


async def test_a_notice_its_replica_never_sent_is_sent_by_another(
    rooms_bus: tuple[RoomsService, Bus],
    replica: tuple[RoomsService, Bus],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rooms, bus = rooms_bus
    other, other_bus = replica
    owner = user("owner")
    code = await new_room(rooms, owner)
    refused = refusing_notices(bus, monkeypatch)
    reply = await call(rooms, "close", env(owner, code, "gwA:1"))
    assert reply == {"ok": True, "data": {}}  # committed: the notice is kept, not lost
    assert len(refused) == 1 and notices_of(bus, code) == []
    assert len(await kept(rooms, code)) == 1
    # Younger than the grace, the notice is still its own replica's to send.
    await outbox.send_stale(other.engine, other.nc)
    assert notices_of(other_bus, code) == []
    # Past it, any replica's sweep sends it, once.
    monkeypatch.setattr(outbox, "GRACE_MS", 0)
    stop = asyncio.Event()
    sweeping = asyncio.create_task(other.sweep(stop, 0.02))
    try:
        await until_empty(other, code)
        await asyncio.sleep(0.1)  # a few more sweeps
    finally:
        stop.set()
        await sweeping
    assert [(n["room"], n["reason"], n["conns"]) for n in notices_of(other_bus, code)] == [
        (code, "closed", None)
    ]
