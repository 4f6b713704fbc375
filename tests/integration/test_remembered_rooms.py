"""Controls on rooms a replica remembers (services/rooms/controls.py, `_Known`) skip the read:
the lock, a checked write and the commit go in one round trip. Whatever changed the room
since, on another replica or by another command, the control must apply to the room as it is
now, on real PostgreSQL: the check finds the change and the room is read again."""

from collections import namedtuple
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import sequencer
from services.common.contracts import events
from services.common.contracts.commands import Join, RateChange, Seek, SettingsUpdate, TargetUser
from services.common.contracts.errors import ErrorCode, ServiceError
from services.rooms import controls
from services.rooms import repository as rooms_repo
from services.rooms.models import Room
from services.rooms.moderation import Moderation
from services.rooms.playback import PlaybackState
from services.rooms.service import RoomsService
from tests.support.rooms_service import Bus, env, loaded, new_room, rooms_service, user

pytestmark = pytest.mark.integration


def reads() -> dict[str, float]:
    """Control groups so far, by how their rooms were read."""
    (metric,) = controls.GROUP_READS.collect()
    return {s.labels["read"]: s.value for s in metric.samples if s.name.endswith("_total")}


def left_alone() -> dict[str, float]:
    (metric,) = controls.LEFT_ALONE.collect()
    return {s.labels["reason"]: s.value for s in metric.samples if s.name.endswith("_total")}


def since(before: dict[str, float]) -> dict[str, float]:
    now = reads()
    return {k: now[k] - before.get(k, 0) for k in now if now[k] != before.get(k, 0)}


@dataclass
class Replicas:
    here: RoomsService
    bus: Bus  # what `here` publishes
    there: RoomsService


@pytest_asyncio.fixture
async def replicas(engine: AsyncEngine) -> AsyncIterator[Replicas]:
    """Two rooms replicas on one database: `here` remembers rooms, `there` changes them."""
    here, bus = rooms_service(engine)
    there, _ = rooms_service(engine)
    yield Replicas(here, bus, there)
    await here.aclose()
    await there.aclose()


def playback_events(bus: Bus, code: str) -> list[dict[str, Any]]:
    subject = events.subject_for("playback", code)
    return [orjson.loads(p) for s, p in bus.published if s == subject]


async def test_a_remembered_room_skips_the_read_and_counts_on_from_other_events(
    engine: AsyncEngine,
) -> None:
    rooms, bus = rooms_service(engine)
    owner = user("owner")
    code = await loaded(rooms, owner)
    await rooms.seek(env(owner, code, conn="c"), Seek(position_ms=1000))
    # Another service's event in the room's sequence (as a chat message counts one): it
    # changes nothing a control reads, so the room stays remembered.
    async with engine.begin() as conn:
        chat_v = await sequencer.bump(conn, code)
    before = reads()
    reply = await rooms.seek(env(owner, code, conn="c"), Seek(position_ms=2000))
    assert since(before) == {"remembered": 1}
    assert reply["playback"]["position_ms"] == 2000
    last = playback_events(bus, code)[-1]
    assert last["v"] == chat_v + 1, "the new version counts on from the other event"
    assert last["data"] == reply["playback"]
    async with engine.connect() as conn:
        assert await sequencer.current(conn, code) == chat_v + 1
    await rooms.aclose()


async def test_a_room_changed_on_another_replica_is_read_again(
    engine: AsyncEngine, replicas: Replicas
) -> None:
    here, bus, there = replicas.here, replicas.bus, replicas.there
    owner = user("owner")
    code = await loaded(here, owner)
    await here.seek(env(owner, code, conn="c"), Seek(position_ms=1000))
    await there.rate(env(owner, code, conn="c"), RateChange(rate=2.0))
    before = reads()
    reply = await here.seek(env(owner, code, conn="c"), Seek(position_ms=3000))
    assert since(before) == {"remembered": 1, "stale": 1}
    assert reply["playback"]["rate"] == 2.0, "the seek applied to the room as it is now"
    assert reply["playback"]["position_ms"] == 3000
    async with engine.connect() as conn:
        stored = (await conn.execute(select(Room.rate).where(Room.code == code))).scalar_one()
    assert stored == 2.0, "the other replica's change is kept"
    vs = [e["v"] for e in playback_events(bus, code)]
    assert vs == sorted(vs) and len(set(vs)) == len(vs)


async def test_a_member_kicked_on_another_replica_is_refused(replicas: Replicas) -> None:
    here, bus, there = replicas.here, replicas.bus, replicas.there
    owner, member = user("owner"), user("member")
    code = await loaded(here, owner)
    await here.update_settings(env(owner, code), SettingsUpdate(control_mode="any"))
    await here.join(env(member, code, conn="m"), Join())
    await here.seek(env(member, code, conn="m"), Seek(position_ms=1000))
    await Moderation(there).kick(env(owner, code, conn="o"), TargetUser(user_id=member.id))
    published = len(playback_events(bus, code))
    with pytest.raises(ServiceError) as refused:
        await here.seek(env(member, code, conn="m"), Seek(position_ms=5000))
    assert refused.value.code is ErrorCode.NOT_MEMBER
    assert len(playback_events(bus, code)) == published, "nothing was applied"


async def test_a_player_who_joined_elsewhere_is_waited_for(replicas: Replicas) -> None:
    here, there = replicas.here, replicas.there
    owner, viewer = user("owner"), user("viewer")
    code = await loaded(here, owner)
    playing = await here.play(env(owner, code, conn="o"), None)
    assert playing["playback"]["status"] == "playing", "no players: it plays at once"
    await here.seek(env(owner, code, conn="o"), Seek(position_ms=1000))
    await there.join(env(viewer, code, conn="v"), Join(player=True))
    reply = await here.seek(env(owner, code, conn="o"), Seek(position_ms=2000))
    assert reply["playback"]["status"] == "starting", "the new player's ready is awaited"


async def test_a_room_remembered_idle_is_read_again_once_loaded(engine: AsyncEngine) -> None:
    rooms, _bus = rooms_service(engine)
    owner = user("owner")
    code = await new_room(rooms, owner)
    with pytest.raises(ServiceError):  # nothing loaded: refused, and the room remembered
        await rooms.seek(env(owner, code, conn="c"), Seek(position_ms=1000))
    state = PlaybackState(status="paused", entry_id="e1", video_id="v1", duration_ms=60_000)
    async with engine.begin() as conn:  # as the queue's `load` does, through another replica
        await sequencer.bump(conn, code)
        await conn.execute(rooms_repo.room_update(code, rooms_repo.playback_values(state, 0)))
    before, alone_before = reads(), left_alone()
    reply = await rooms.seek(env(owner, code, conn="c"), Seek(position_ms=2000))
    assert reply["playback"]["position_ms"] == 2000
    assert since(before) == {"remembered": 1, "stale": 1}
    assert left_alone() == alone_before, "applied in its group, not left to the ordinary path"
    await rooms.aclose()


def test_known_rooms_are_bounded() -> None:
    fields = ("code", "caller", "room_xmin", "playback_v", *controls._MEMBER_COLUMNS)
    Row = namedtuple("Row", fields)  # as psycopg's namedtuple_row gives it
    known = controls._Known(size=2)
    for code in ("a", "b", "c"):
        known.read(Row(code, "u", "1", 0, "n", "member", 0, False, "7"))
    assert known.row("a", "u") is None, "the least recently used room went first"
    assert known.row("c", "u") is not None
    assert known.row("c", "someone else") is None, "an unknown caller is read"
