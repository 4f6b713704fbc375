"""The queue service's commands on a real database and a real NATS, with the rooms service
answering its access checks: each command writes all it changes in one statement, its
`queue` event is the queue as `load` then reads it, and an entry added after removals goes
last."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db, devstack
from services.common.contracts import events
from services.common.contracts.commands import EntryRef, NoData, QueueAdd, QueueMove
from services.queue.service import QueueService
from services.rooms.handlers import build_router as rooms_router
from tests.support.rooms_service import env, new_room, rooms_service, user

pytestmark = pytest.mark.integration

VIDEO = "dQw4w9WgXcQ"


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


async def test_each_command_writes_all_it_changes_in_one_statement(stack: Stack) -> None:
    owner = user("owner")
    room = await new_room(stack.rooms, owner)
    first = await _add(stack, owner, room, "a")
    await _add(stack, owner, room, "b")
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()).upper())

    sync_engine = stack.queue_engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", seen)
    try:
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
            # The lock and the read go to psycopg in one pipeline (SQLAlchemy does not see
            # them); then one statement writes the entries, the room's queue version, the
            # room's sequence and the remembered reply.
            assert len(statements) == 1, (name, statements)
            (write,) = statements
            for table in ("QUEUE_ENTRIES", "QUEUE_ROOMS", "ROOM_SEQ", "QUEUE_COMMANDS"):
                assert table in write, (name, table)
    finally:
        event.remove(sync_engine, "before_cursor_execute", seen)


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
