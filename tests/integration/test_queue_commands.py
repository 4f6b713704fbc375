"""The queue service's commands on a real database and a real NATS, with the rooms service
answering its access checks: each command takes its room's lock, reads its queue and
writes all it changes in one statement each, its `queue` event is the queue as `load` then
reads it, and an entry added after removals goes last."""

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import orjson
import psycopg
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db, devstack
from services.common.contracts import events
from services.common.contracts.commands import EntryRef, NoData, QueueAdd, QueueMove
from services.queue import repository as repo
from services.queue.service import QueueService
from services.rooms.handlers import build_router as rooms_router
from tests.support.rooms_service import env, new_room, rooms_service, user

pytestmark = pytest.mark.integration

VIDEO = "dQw4w9WgXcQ"
QUEUE_TABLE = re.compile(r"\b(FROM|INTO|UPDATE|JOIN) QUEUE_")
QUEUE_LOCK = "SELECT V FROM ROOM_SEQ"  # the queue's (rooms locks with `SELECT ROOM ...`)


@dataclass
class Stack:
    queue: QueueService
    queue_engine: AsyncEngine
    rooms: Any
    nc: NATS


@pytest_asyncio.fixture
async def stack(engine: AsyncEngine, upkeep_db_url: str, tmp_path: Path) -> AsyncIterator[Stack]:
    # A NATS of its own: the session's may have a whole system's rooms serving on it.
    server, url = devstack.start_nats(tmp_path / "nats")
    nc = await nats.connect(url)
    rooms, _ = rooms_service(engine)
    await rooms_router(rooms).serve(nc, 16)
    queue_engine = db.create_engine(upkeep_db_url, pool_size=2)
    try:
        yield Stack(QueueService(queue_engine, nc, 200), queue_engine, rooms, nc)
    finally:
        await nc.close()
        await rooms.aclose()
        await queue_engine.dispose()
        server.stop()


async def _add(stack: Stack, who: Any, room: str, title: str, *, head: bool = False) -> str:
    reply = await stack.queue.add(env(who, room), QueueAdd(video_id=VIDEO, title=title, next=head))
    return str(reply["entry"]["id"])


async def _titles(stack: Stack, who: Any, room: str) -> list[str]:
    loaded = await stack.queue.load(env(who, room), NoData())
    return [entry["title"] for entry in loaded["queue"]]


async def test_an_entry_added_after_removals_goes_last(stack: Stack) -> None:
    owner = user("owner")
    room = await new_room(stack.rooms, owner)
    ids = [await _add(stack, owner, room, t) for t in ("a", "b", "c", "d")]
    for entry_id in ids[:2]:
        await stack.queue.remove(env(owner, room), EntryRef(entry_id=entry_id))
    await _add(stack, owner, room, "e")
    # Positions keep the gaps the removals left (c=2, d=3): counting entries gave e 2.
    assert await _titles(stack, owner, room) == ["c", "d", "e"]


async def test_each_command_locks_reads_and_writes_its_queue_in_one_statement_each(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = user("owner")
    room = await new_room(stack.rooms, owner)
    first = await _add(stack, owner, room, "a")
    await _add(stack, owner, room, "b")
    statements: list[str] = []
    execute = psycopg.AsyncCursor.execute

    async def seen(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        statements.append(" ".join(str(query).split()).upper())
        return await execute(cursor, query, *args, **kwargs)

    # Every statement psycopg sends (SQLAlchemy's and the pipelines'); rooms, answering the
    # access checks in this process, touches no queue table.
    monkeypatch.setattr(psycopg.AsyncCursor, "execute", seen)
    commands = {
        "add": lambda: _add(stack, owner, room, "c"),
        "add next": lambda: _add(stack, owner, room, "z", head=True),
        "move": lambda: stack.queue.move(env(owner, room), QueueMove(entry_id=first, index=2)),
        "remove": lambda: stack.queue.remove(env(owner, room), EntryRef(entry_id=first)),
        "shuffle": lambda: stack.queue.shuffle(env(owner, room), NoData()),
    }
    for name, command in commands.items():
        statements.clear()
        await command()
        queue = [s for s in statements if QUEUE_TABLE.search(s) or s.startswith(QUEUE_LOCK)]
        # The room's lock, one read of its queue, one write of everything it changes.
        assert len(queue) == 3, (name, queue)
        lock, read, write = queue
        assert lock.startswith(QUEUE_LOCK) and "FOR UPDATE" in lock, name
        assert read.startswith("SELECT") and "QUEUE_ENTRIES" in read, name
        for table in ("QUEUE_ENTRIES", "QUEUE_ROOMS", "ROOM_SEQ", "QUEUE_COMMANDS"):
            assert table in write, (name, table)


async def test_every_queue_event_is_the_queue_as_load_reads_it(stack: Stack) -> None:
    owner = user("owner")
    room = await new_room(stack.rooms, owner)
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_event(msg: Any) -> None:
        await received.put(msg.data)

    sub = await stack.nc.subscribe(events.subject_for("queue", room), cb=on_event)
    try:
        a = await _add(stack, owner, room, "a")
        b = await _add(stack, owner, room, "b")
        await _add(stack, owner, room, "c")
        await _add(stack, owner, room, "first", head=True)
        steps = [
            lambda: stack.queue.move(env(owner, room), QueueMove(entry_id=a, index=3)),
            lambda: stack.queue.remove(env(owner, room), EntryRef(entry_id=b)),
            lambda: stack.queue.shuffle(env(owner, room), NoData()),
            lambda: _add(stack, owner, room, "d"),
        ]
        for step in steps:
            await step()
        await stack.nc.flush()
        seen = []
        for _ in range(4 + len(steps)):
            seen.append(orjson.loads(await asyncio.wait_for(received.get(), 5)))
        loaded = await stack.queue.load(env(owner, room), NoData())
        last = seen[-1]
        assert last["v"] == loaded["versions"]["queue"]
        assert last["data"] == loaded["queue"]
        assert [e["title"] for e in seen[3]["data"]] == ["first", "a", "b", "c"]
        assert [e["title"] for e in seen[4]["data"]] == ["first", "b", "c", "a"]
        assert [e["title"] for e in seen[5]["data"]] == ["first", "c", "a"]
        assert sorted(e["title"] for e in seen[6]["data"]) == ["a", "c", "first"]
        assert [e["title"] for e in seen[7]["data"]][-1] == "d"
        assert [event["v"] for event in seen] == sorted({event["v"] for event in seen})
    finally:
        await sub.unsubscribe()


async def test_a_retried_request_is_answered_as_first_and_applied_once(stack: Stack) -> None:
    owner = user("owner")
    room = await new_room(stack.rooms, owner)
    request = env(owner, room)
    first = await stack.queue.add(request, QueueAdd(video_id=VIDEO, title="once"))
    again = await stack.queue.add(request, QueueAdd(video_id=VIDEO, title="once"))
    assert again == first
    assert await _titles(stack, owner, room) == ["once"]


async def test_the_lock_is_refused_outside_a_transaction(stack: Stack) -> None:
    """On an autocommitting connection the room's lock would end with its own statement."""
    owner = user("owner")
    room = await new_room(stack.rooms, owner)
    autocommit = db.single_statements(stack.queue_engine)
    async with autocommit.connect() as conn:
        with pytest.raises(RuntimeError, match="needs a transaction"):
            await repo.lock_and_read(conn, room)
