"""Rooms' sweep (RoomsService.sweep), on real PostgreSQL: every replica runs it each second
for the deadlines whose replica died and the notices nobody sent, so an idle one costs two
reads and no transaction, and what it finds is still acted on."""

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg import pq
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.jsonutil import now_ms
from services.rooms import repository as rooms_repo
from services.rooms.service import RoomsService
from tests.support.rooms_service import loaded, rooms_service, user

pytestmark = pytest.mark.integration


async def one_sweep(rooms: RoomsService, until: Callable[[], bool]) -> None:
    """Run the sweep until `until()` (at most 5 s), then stop it."""
    stop = asyncio.Event()
    sweeping = asyncio.create_task(rooms.sweep(stop, 0.05))
    try:
        for _ in range(100):
            if until():
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await sweeping
    assert until()


async def test_an_idle_sweep_reads_twice_and_opens_no_transaction(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    rooms, _bus = rooms_service(engine)
    sent: list[tuple[str, pq.TransactionStatus]] = []
    execute = psycopg.AsyncCursor.execute

    async def noting(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        result = await execute(cursor, query, *args, **kwargs)
        statement = " ".join(str(query).split()).upper()
        sent.append((statement, cursor.connection.info.transaction_status))
        return result

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", noting)
    read_both: Callable[[], bool] = lambda: any("ROOMS_OUTBOX" in q for q, _ in sent)  # noqa: E731
    await one_sweep(rooms, read_both)
    monkeypatch.undo()
    await rooms.aclose()
    # The first sweep's statements (a new engine's first connection also asks the server
    # its version and schema: not the sweep's).
    first = sent[: 1 + next(i for i, (q, _) in enumerate(sent) if "ROOMS_OUTBOX" in q)]
    reads = [(q, status) for q, status in first if "FROM ROOMS_" in q]
    assert len(reads) == 2 and "DEADLINE_MS" in reads[0][0], first
    assert all(status == pq.TransactionStatus.IDLE for _, status in reads), first
    assert not any(q.startswith(("BEGIN", "COMMIT", "ROLLBACK")) for q, _ in first), first


async def test_a_sweep_acts_on_a_deadline_no_timer_holds(engine: AsyncEngine) -> None:
    """A room left `starting` past its start timeout (its replica died with the timer) is
    started by another replica's sweep."""
    owner_replica, _ = rooms_service(engine)
    code = await loaded(owner_replica, user("owner"))
    await owner_replica.aclose()
    async with engine.begin() as conn:
        row = await rooms_repo.get_room(conn, code)
        state = rooms_repo.playback_of(row)
        stuck = dataclasses.replace(state, status="starting", deadline_ms=now_ms() - 1)
        await conn.execute(rooms_repo.room_update(code, rooms_repo.playback_values(stuck, 0)))
    rooms, bus = rooms_service(engine)

    async def status() -> str:
        async with engine.connect() as conn:
            return str((await rooms_repo.get_room(conn, code)).status)

    def started() -> bool:
        return any("playback" in subject and code in subject for subject, _ in bus.published)

    await one_sweep(rooms, started)
    await rooms.aclose()
    assert await status() == "playing"


async def test_a_sweep_that_fails_goes_on_next_time(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that fails (the database restarting) is logged and the next sweep runs."""
    rooms, _bus = rooms_service(engine)
    calls: list[int] = []
    due_rooms: Callable[..., Awaitable[list[str]]] = rooms_repo.due_rooms

    async def failing_once(conn: Any, now: int, limit: int = 200) -> list[str]:
        calls.append(now)
        if len(calls) == 1:
            raise ConnectionError("database restarting")
        return await due_rooms(conn, now, limit)

    monkeypatch.setattr(rooms_repo, "due_rooms", failing_once)
    await one_sweep(rooms, lambda: len(calls) >= 2)
    await rooms.aclose()
