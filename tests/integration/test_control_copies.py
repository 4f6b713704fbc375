"""The control committer's copies of rooms (services/rooms/known.py, controls.py) on real
PostgreSQL: a control applied to a copy is written only if the copy is still current, so a
change made by any other path (the ordinary commands, another replica, a write racing the
check) is seen by the next control exactly as if it had locked and read the room."""

import asyncio
from typing import Any

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db, sequencer
from services.common.contracts.commands import Join, RateChange, Seek, SettingsUpdate
from services.common.contracts.errors import ErrorCode, ServiceError
from services.rooms import controls
from services.rooms import repository as rooms_repo
from services.rooms.playback import PlaybackState
from services.rooms.service import RoomsService
from tests.integration.test_control_groups import SentQueries, left_alone, playback_events
from tests.support.rooms_service import Bus, env, loaded, new_room, rooms_service, user

pytestmark = pytest.mark.integration


def copies() -> dict[str, float]:
    (metric,) = controls.COPIES.collect()
    return {s.labels["outcome"]: s.value for s in metric.samples if s.name.endswith("_total")}


def gained(before: dict[str, float], outcome: str) -> float:
    return copies().get(outcome, 0) - before.get(outcome, 0)


async def seeked(rooms: RoomsService, who: Any, code: str, position_ms: int) -> dict[str, Any]:
    return await rooms.seek(env(who, code, conn="c"), Seek(position_ms=position_ms))


async def versions_follow(engine: AsyncEngine, bus: Bus, code: str) -> None:
    """Every playback event has its own version, in order, and the last is the room's."""
    vs = [e["v"] for e in playback_events(bus, code)]
    assert vs == sorted(set(vs)), vs
    async with engine.connect() as conn:
        assert vs[-1] == await sequencer.current(conn, code)


async def test_controls_after_the_first_are_written_to_the_copy(engine: AsyncEngine) -> None:
    rooms, bus = rooms_service(engine)
    owner = user("owner")
    code = await loaded(rooms, owner)
    before = copies()
    for i in range(5):
        reply = await seeked(rooms, owner, code, 1000 * (i + 1))
        assert reply["playback"]["position_ms"] == 1000 * (i + 1)
    assert gained(before, "unknown") == 1 and gained(before, "current") == 4
    await versions_follow(engine, bus, code)
    await rooms.aclose()


async def test_a_settings_change_between_controls_is_seen(engine: AsyncEngine) -> None:
    """A member's copy of the room says anyone may seek; the owner then limits control to
    themself by the ordinary path. The member's next seek is refused."""
    rooms, bus = rooms_service(engine)
    owner, member = user("owner"), user("member")
    code = await loaded(rooms, owner)
    await rooms.update_settings(env(owner, code), SettingsUpdate(control_mode="any"))
    await rooms.join(env(member, code, conn="m"), Join())
    await seeked(rooms, member, code, 1000)
    await seeked(rooms, member, code, 2000)
    before = copies()
    await rooms.update_settings(env(owner, code), SettingsUpdate(control_mode="owner_only"))
    with pytest.raises(ServiceError) as refused:
        await seeked(rooms, member, code, 3000)
    assert refused.value.code is ErrorCode.FORBIDDEN
    assert gained(before, "stale") == 1
    assert [e["data"]["position_ms"] for e in playback_events(bus, code)] == [1000, 2000]
    await rooms.aclose()


async def test_a_write_the_copy_missed_is_read(engine: AsyncEngine) -> None:
    """A write that bumps no version (as bookkeeping writes do) still makes the copy stale:
    the rate written behind its back is in the next reply, and the room gets no copy for a
    while."""
    rooms, bus = rooms_service(engine)
    owner = user("owner")
    code = await loaded(rooms, owner)
    await seeked(rooms, owner, code, 1000)
    async with engine.begin() as conn:
        await conn.exec_driver_sql(
            "UPDATE rooms_rooms SET rate = 1.5 WHERE code = %(code)s", {"code": code}
        )
    before = copies()
    reply = await seeked(rooms, owner, code, 2000)
    assert reply["playback"]["rate"] == 1.5
    assert gained(before, "stale") == 1
    # Written by others too, the room is shunned: the next seeks lock and read it.
    await seeked(rooms, owner, code, 3000)
    await seeked(rooms, owner, code, 4000)
    assert gained(before, "unknown") == 2 and gained(before, "current") == 0
    await versions_follow(engine, bus, code)
    await rooms.aclose()


async def test_another_path_bumping_the_version_is_read(engine: AsyncEngine) -> None:
    """Chat and the queue bump the room's version too: the next event follows theirs."""
    rooms, bus = rooms_service(engine)
    owner = user("owner")
    code = await loaded(rooms, owner)
    await seeked(rooms, owner, code, 1000)
    async with engine.begin() as conn:
        bumped = await sequencer.bump(conn, code)
    before = copies()
    await seeked(rooms, owner, code, 2000)
    assert gained(before, "stale") == 1
    assert playback_events(bus, code)[-1]["v"] == bumped + 1
    await rooms.aclose()


async def test_a_write_racing_the_check_makes_it_read_again(engine: AsyncEngine) -> None:
    """Another transaction holds the room's lock and changes its row; the seek's check
    waits for the lock, its snapshot from before that commit still matches the copy, and
    its write fails on the row changed since (REPEATABLE READ): it reads the room again."""
    rooms, bus = rooms_service(engine)
    owner = user("owner")
    code = await loaded(rooms, owner)
    await seeked(rooms, owner, code, 1000)
    before = copies()
    other = await db.keyed_connection(db.driver_dsn(engine))
    try:
        await other.execute("BEGIN")
        await other.execute("SELECT v FROM room_seq WHERE room = %s FOR UPDATE", (code,))
        await other.execute("UPDATE rooms_rooms SET rate = 1.5 WHERE code = %s", (code,))
        seek = asyncio.ensure_future(seeked(rooms, owner, code, 2000))
        await wait_for_lock_wait(other)
        assert not seek.done()
        await other.execute("COMMIT")
        reply = await asyncio.wait_for(seek, 10)
    finally:
        await other.close()
    assert reply["playback"]["rate"] == 1.5 and reply["playback"]["position_ms"] == 2000
    assert gained(before, "conflict") == 1
    await versions_follow(engine, bus, code)
    await rooms.aclose()


async def wait_for_lock_wait(pg: psycopg.AsyncConnection[Any]) -> None:
    """Until some other backend waits for a lock (bounded: 5 s)."""
    for _ in range(500):
        cur = await pg.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND pid <> pg_backend_pid()"
        )
        row = await cur.fetchone()
        if row and row[0]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the seek never waited for the room's lock")


async def test_a_control_refused_by_a_copy_is_decided_on_the_room_as_read(
    engine: AsyncEngine,
) -> None:
    """The copy shows a room with nothing loaded, and a video was loaded since: the seek the
    copy refuses is applied after all, to the room locked and read (not left to the dear
    ordinary path), and the next seeks use the new copy."""
    rooms, bus = rooms_service(engine)
    owner = user("owner")
    code = await new_room(rooms, owner)
    await rooms.rate(env(owner, code, conn="c"), RateChange(rate=1.25))  # copy: nothing loaded
    state = PlaybackState(status="paused", entry_id="e1", video_id="v1", duration_ms=60_000)
    async with engine.begin() as conn:
        await conn.execute(rooms_repo.room_update(code, rooms_repo.playback_values(state, 0)))
    before, alone_before = copies(), left_alone()
    for position_ms in (1000, 2000, 3000):
        reply = await seeked(rooms, owner, code, position_ms)
        assert reply["playback"]["position_ms"] == position_ms
    assert gained(before, "refused") == 1 and gained(before, "current") == 2
    assert left_alone() == alone_before, "no control went to the ordinary path"
    await versions_follow(engine, bus, code)
    await rooms.aclose()


async def test_a_refused_control_leaves_no_copy(engine: AsyncEngine) -> None:
    """`play` in an idle room is left to the ordinary path (which asks the queue, and would
    change the room at once): its read is not kept as a copy."""
    rooms, _bus = rooms_service(engine)
    owner = user("owner")
    code = await new_room(rooms, owner)

    async def advance(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise ServiceError(ErrorCode.QUEUE_EMPTY)  # what the queue answers in an empty room

    rooms._advance = advance  # type: ignore[method-assign]
    with pytest.raises(ServiceError):
        await rooms.play(env(owner, code, conn="c"), None)
    assert rooms.controls is not None and rooms.controls._known.row(code, owner.id) is None
    await rooms.aclose()


async def test_a_larger_group_locks_and_reads(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_CHECKED_GROUP a group locks and reads its rooms even when their copies are
    current (under load the round trip is shared; see controls.py); alone, a control is
    written to its copy."""
    rooms, _bus = rooms_service(engine)
    owners = [user(f"owner{i}") for i in range(controls.MAX_CHECKED_GROUP + 2)]
    codes = [await loaded(rooms, owner) for owner in owners]
    for owner, code in zip(owners, codes, strict=True):
        await seeked(rooms, owner, code, 1000)  # each room's copy
    sent = SentQueries(monkeypatch)
    before = copies()
    # The first goes alone; the rest wait for it and go together.
    await asyncio.gather(
        *(seeked(rooms, owner, code, 2000) for owner, code in zip(owners, codes, strict=True))
    )
    alone, together_read, together_written = sent.take()
    assert alone.startswith(b"BEGIN ISOLATION LEVEL REPEATABLE READ; EXECUTE rooms_write(")
    assert together_read.startswith(b"BEGIN; EXECUTE rooms_lock(")
    assert together_written.startswith(b"EXECUTE rooms_write(")
    assert gained(before, "current") == 1
    await rooms.aclose()
