"""A command that waits for a room's lock reads the room as its previous holder left it.

Another rooms replica (here: a plain connection) holds the room's lock and changes the room.
A command of this replica waits for the lock, then must see that change: with the lock and
the read in one statement, PostgreSQL re-reads only the locked sequence row after the wait,
and the room row comes from the statement's older snapshot, so the command would write the
stale row back (a lost update)."""

import asyncio
import dataclasses
from typing import Any

import psycopg
import pytest
from psycopg import pq
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import sequencer
from services.common.contracts.commands import Join, Seek
from services.rooms import repository as rooms_repo
from services.rooms.models import Room
from services.rooms.transaction import RoomTx
from tests.support.rooms_service import env, loaded, rooms_service, user

pytestmark = pytest.mark.integration

LOCK_WAIT_S = 0.3  # long enough for the command to be waiting for the lock


async def stored_rate(engine: AsyncEngine, code: str) -> float:
    async with engine.connect() as conn:
        return float((await conn.execute(select(Room.rate).where(Room.code == code))).scalar_one())


async def while_another_replica_sets_rate(
    engine: AsyncEngine, code: str, command: asyncio.Future[Any]
) -> Any:
    """Hold the room's lock, set its rate to 2.0 with a new version (as a replica's `rate`
    would), let `command` start and wait for the lock, then commit; the command's result."""
    async with engine.connect() as other:
        await other.begin()
        await sequencer.bump(other, code)
        await other.execute(rooms_repo.room_update(code, {"rate": 2.0}))
        task = asyncio.ensure_future(command)
        await asyncio.sleep(LOCK_WAIT_S)
        assert not task.done(), "the command waits for the room's lock"
        await other.commit()
    return await asyncio.wait_for(task, 10)


async def test_a_grouped_control_reads_the_room_after_the_lock(engine: AsyncEngine) -> None:
    rooms, _bus = rooms_service(engine)
    assert rooms.controls is not None, "PostgreSQL commits controls in groups"
    owner = user("owner")
    code = await loaded(rooms, owner)
    async with engine.connect() as conn:
        v_before = await sequencer.current(conn, code)
    reply = await while_another_replica_sets_rate(
        engine, code, rooms.seek(env(owner, code, conn="c"), Seek(position_ms=5000))
    )
    assert reply["playback"]["position_ms"] == 5000
    assert reply["playback"]["rate"] == 2.0, "the seek applied to the room as it is now"
    assert await stored_rate(engine, code) == 2.0, "the other replica's change is kept"
    async with engine.connect() as conn:
        assert await sequencer.current(conn, code) == v_before + 2  # (v_before is not None)
    await rooms.aclose()


async def test_the_ordinary_path_reads_the_room_after_the_lock(engine: AsyncEngine) -> None:
    rooms, _bus = rooms_service(engine)
    owner = user("owner")
    code = await loaded(rooms, owner)

    async def move(tx: RoomTx) -> dict[str, Any]:
        tx.set_playback(dataclasses.replace(tx.playback, position_ms=7000))
        return {"rate": tx.playback.rate}

    seen = await while_another_replica_sets_rate(
        engine, code, rooms.in_room(None, code, "move", move)
    )
    assert seen == {"rate": 2.0}, "the command saw the room as it is now"
    assert await stored_rate(engine, code) == 2.0, "the other replica's change is kept"
    await rooms.aclose()


async def test_a_join_sends_its_statements_in_pipelines_but_its_write(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new member's join is four round trips before its commit, where its statements
    took eight: the room's lock and read with the transaction's BEGIN (the read still a
    statement of its own, as the tests above need), the membership with the read of the
    socket's session, the session's writes, and the member list with the SET LOCAL before it
    (psycopg's pipeline mode). Left alone: the commit's write. The snapshot reads nothing
    more: the room is what the transaction read and wrote."""
    rooms, _bus = rooms_service(engine)
    owner = user("owner")
    code = await loaded(rooms, owner)
    sent: list[tuple[str, bool]] = []

    execute = psycopg.AsyncCursor.execute

    async def noting(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        piped = cursor.connection.pgconn.pipeline_status != pq.PipelineStatus.OFF
        sent.append((" ".join(str(query).split())[:40].upper(), piped))
        return await execute(cursor, query, *args, **kwargs)

    # Every statement goes through a cursor (a connection's `execute` makes one).
    monkeypatch.setattr(psycopg.AsyncCursor, "execute", noting)
    await rooms.join(env(user("ann"), code, conn="c-ann"), Join())
    monkeypatch.undo()
    await rooms.aclose()
    piped = [query for query, in_pipeline in sent if in_pipeline]
    alone = [query for query, in_pipeline in sent if not in_pipeline]
    assert [q.split()[0] for q in piped] == [
        *("SELECT", "SELECT"),  # the lock, the room
        *("INSERT", "SELECT"),  # the membership, the socket's session if any
        *("INSERT", "DELETE"),  # the session, the user's away ones superseded
        *("SET", "SELECT"),  # sequential scans off, the member list
    ], sent
    assert piped[0].startswith("SELECT V FROM ROOM_SEQ")  # ... FOR UPDATE
    assert piped[2].startswith("INSERT INTO ROOMS_MEMBERS")
    assert piped[4].startswith("INSERT INTO ROOMS_SESSIONS")
    assert piped[6].startswith("SET LOCAL ENABLE_SEQSCAN")
    assert piped[7].startswith("SELECT COALESCE(JSON_AGG")
    assert [q.split()[0] for q in alone] == ["WITH"], sent
