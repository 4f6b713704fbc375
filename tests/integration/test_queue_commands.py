"""The queue service's commands on a real database and a real NATS, with the rooms service
answering its access checks: each command takes its room's lock, reads its queue and
writes all it changes in one statement each, its `queue` event is the queue as `load` then
reads it, and an entry added after removals goes last."""

import asyncio
import re
import uuid
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
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import bus, db, devstack
from services.common.contracts import events
from services.common.contracts.commands import EntryRef, NoData, QueueAdd, QueueMove
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.idempotency import CommandLog
from services.queue import groups
from services.queue import repository as repo
from services.queue.models import QueueCommand
from services.queue.service import QueueService
from services.queue.transaction import QueueTx
from services.rooms.handlers import build_router as rooms_router
from tests.support.rooms_service import env, new_room, rooms_service, user

pytestmark = pytest.mark.integration

VIDEO = "dQw4w9WgXcQ"
QUEUE_TABLE = re.compile(r"\b(FROM|INTO|UPDATE|JOIN) QUEUE_")
# The queue's lock of one room or of a group's (rooms locks with `SELECT ROOM ...`).
QUEUE_LOCK = re.compile(r"^SELECT V(, ROOM)? FROM ROOM_SEQ")


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
    queue = QueueService(queue_engine, nc, 200)
    try:
        yield Stack(queue, queue_engine, rooms, nc)
    finally:
        await queue.aclose()
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
        queue = [s for s in statements if QUEUE_TABLE.search(s) or QUEUE_LOCK.match(s)]
        # The room's lock, one read of its queue, one write of everything it changes.
        assert len(queue) == 3, (name, queue)
        lock, read, write = queue
        assert QUEUE_LOCK.match(lock) and "FOR UPDATE" in lock, name
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


async def test_a_queue_event_the_bus_refused_is_followed_by_a_resync(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The add commits and its event is lost: the queue answers it as committed and asks
    rooms, over the bus, for a `resync` after the room's version (services/common/
    roomevents.py)."""
    owner = user("owner")
    room = await new_room(stack.rooms, owner)
    stack.queue.room_events.repair_waits_s = (0.05, 0.05)
    publish, refused = bus.publish, []

    async def refusing_the_queue_event(nc: Any, subject: str, payload: bytes) -> None:
        if subject == events.subject_for("queue", room) and not refused:
            refused.append(orjson.loads(payload)["v"])
            raise ConnectionError("the bus refused it")
        await publish(nc, subject, payload)

    monkeypatch.setattr(bus, "publish", refusing_the_queue_event)
    await _add(stack, owner, room, "a")  # answered: the entry is in
    assert await _titles(stack, owner, room) == ["a"]
    (lost,) = refused
    rooms_bus = stack.rooms.nc  # the in-process rooms publishes to a recorder
    for _ in range(100):
        if any(s == events.subject_for("resync", room) for s, _p in rooms_bus.published):
            break
        await asyncio.sleep(0.02)
    resyncs = [orjson.loads(p) for s, p in rooms_bus.published if s.endswith(".evt.resync")]
    assert [(r["room"], r["v"], r["data"]) for r in resyncs] == [
        (room, lost + 1, {"reason": "events_lost"})
    ]


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


# -- commands committed in groups (services/queue/groups.py) -------------------------------


def group_sizes() -> dict[float, float]:
    (metric,) = groups.GROUP_SIZE.collect()
    return {float(s.labels["le"]): s.value for s in metric.samples if s.name.endswith("_bucket")}


async def test_commands_sent_meanwhile_share_a_transaction(stack: Stack) -> None:
    owner = user("owner")
    rooms = [await new_room(stack.rooms, owner) for _ in range(12)]
    received: list[dict[str, Any]] = []

    async def on_event(msg: Any) -> None:
        received.append(orjson.loads(msg.data))

    sub = await stack.nc.subscribe(events.subject_for("queue", "*"), cb=on_event)
    before = group_sizes()
    requests = [env(owner, room) for room in rooms]
    replies = await asyncio.gather(
        *(
            stack.queue.add(request, QueueAdd(video_id=VIDEO, title=f"t{i}"))
            for i, request in enumerate(requests)
        )
    )
    after = group_sizes()
    assert after[1.0] - before.get(1.0, 0) < len(rooms), "some commands shared a group"
    for room, reply in zip(rooms, replies, strict=True):
        loaded = await stack.queue.load(env(owner, room), NoData())
        assert loaded["queue"] == [reply["entry"]], "each applied to its own room"
    # Each answered as it was committed: a retry of any of them gets the same reply.
    again = await stack.queue.add(requests[5], QueueAdd(video_id=VIDEO, title="t5"))
    assert again == replies[5]
    await stack.nc.flush()
    for _ in range(50):
        if len(received) >= len(rooms):
            break
        await asyncio.sleep(0.02)
    await sub.unsubscribe()
    by_room = {event["room"]: event for event in received}
    assert sorted(by_room) == sorted(rooms), "one event per room"
    for room, reply in zip(rooms, replies, strict=True):
        loaded = await stack.queue.load(env(owner, room), NoData())
        assert by_room[room]["v"] == loaded["versions"]["queue"] == 1
        assert by_room[room]["data"] == [reply["entry"]]


async def test_a_refused_command_and_a_retry_in_a_group_are_answered_alone(stack: Stack) -> None:
    owner = user("owner")
    first, second, third = [await new_room(stack.rooms, owner) for _ in range(3)]
    retried = env(owner, first)
    answered = await stack.queue.add(retried, QueueAdd(video_id=VIDEO, title="once"))
    results = await asyncio.gather(
        stack.queue.add(retried, QueueAdd(video_id=VIDEO, title="once")),
        stack.queue.remove(env(owner, second), EntryRef(entry_id="nosuchentry")),
        stack.queue.add(env(owner, third), QueueAdd(video_id=VIDEO, title="fresh")),
        return_exceptions=True,
    )
    assert results[0] == answered, "the retry is answered as the first was"
    assert isinstance(results[1], ServiceError) and results[1].code is ErrorCode.NOT_FOUND
    assert results[2]["entry"]["title"] == "fresh"
    assert await _titles(stack, owner, first) == ["once"], "the retry applied nothing"
    assert await _titles(stack, owner, third) == ["fresh"]


async def test_a_group_takes_one_command_of_a_room(stack: Stack) -> None:
    """Two commands of one room waiting at once (a caller gave up and released the room's
    lock) go in successive groups, at successive versions."""
    owner = user("owner")
    room = await new_room(stack.rooms, owner)
    committer = groups.CommandGroups(stack.queue_engine, _no_publish)
    commands = CommandLog(QueueCommand.__table__)

    def adder(title: str) -> groups.Body:
        async def body(tx: QueueTx) -> dict[str, Any]:
            entry = repo.Entry(uuid.uuid4().hex, VIDEO, title, None, None, "u", "U", 0)
            tx.add(entry, at_head=False)
            return {"v": tx.v + 1}

        return body

    def remember(reply: Any) -> Any:
        return commands.remember_statement("u", uuid.uuid4().hex, "add", reply)

    before = group_sizes()
    outcomes = await asyncio.gather(
        *(committer.apply(room, adder(t), remember) for t in ("a", "b", "c"))
    )
    await committer.aclose()
    after = group_sizes()
    assert [o.reply["v"] for o in outcomes if o is not None] == [1, 2, 3]
    assert after[1.0] - before.get(1.0, 0) == 3, "three groups of one"
    assert await _titles(stack, owner, room) == ["a", "b", "c"]


async def test_a_room_that_is_gone_is_left_to_the_ordinary_path(stack: Stack) -> None:
    committer = groups.CommandGroups(stack.queue_engine, _no_publish)

    async def body(_tx: QueueTx) -> None:
        raise AssertionError("not applied to a room that does not exist")

    assert await committer.apply("nosuchroom", body, lambda _reply: None) is None
    await committer.aclose()


async def _no_publish(_room: str, _event: bytes) -> None:
    return None


async def test_two_replicas_groups_over_the_same_rooms_never_deadlock(
    stack: Stack, upkeep_db_url: str
) -> None:
    """Two replicas' groups lock the same rooms (room_seq rows) in room order: each waits for
    the other instead of deadlocking, so no group fails and every command is applied."""
    owner = user("owner")
    rooms = [await new_room(stack.rooms, owner) for _ in range(6)]
    other_engine = db.create_engine(upkeep_db_url, pool_size=2)
    replicas = [
        groups.CommandGroups(stack.queue_engine, _no_publish),
        groups.CommandGroups(other_engine, _no_publish),
    ]
    commands = CommandLog(QueueCommand.__table__)

    async def body(tx: QueueTx) -> None:
        entry = repo.Entry(uuid.uuid4().hex, VIDEO, tx.room, None, None, "u", "U", 0)
        tx.add(entry, at_head=False)

    def remember(reply: Any) -> Any:
        return commands.remember_statement("u", uuid.uuid4().hex, "add", reply)

    failed = _groups_failed()
    rounds = 5
    try:
        for _ in range(rounds):
            outcomes = await asyncio.gather(
                *(replicas[0].apply(room, body, remember) for room in rooms),
                *(replicas[1].apply(room, body, remember) for room in reversed(rooms)),
            )
            assert all(o is not None for o in outcomes), "every command applied in a group"
    finally:
        for replica in replicas:
            await replica.aclose()
        await other_engine.dispose()
    assert _groups_failed() == failed, "no group failed (a deadlock would fail one)"
    for room in rooms:
        assert len(await _titles(stack, owner, room)) == 2 * rounds


def _groups_failed() -> float:
    value = REGISTRY.get_sample_value(
        "sharetube_queue_commands_alone_total", {"reason": "group_failed"}
    )
    return value or 0.0
