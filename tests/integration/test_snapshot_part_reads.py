"""The queue's and chat's parts of a join snapshot (`queue.load`, `chat.history`) on
PostgreSQL: reads asked together go in one statement (services/common/batchedreads.py), each
gets its own room's answer, and a part's version and its contents come from one snapshot, so
the part holds exactly the changes up to the version it names. A join storm asks for both once
per join."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from services.chat import repository as chat_repo
from services.chat.metrics import HISTORY_BATCH_SIZE
from services.chat.sends import SendGroups
from services.chat.service import ChatService
from services.common import db, devstack, sequencer
from services.common.contracts.commands import ChatHistory, NoData, QueueAdd
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import ChatMessage
from services.queue.metrics import SNAPSHOT_BATCH_SIZE
from services.queue.service import QueueService
from services.rooms.handlers import build_router as rooms_router
from tests.support.rooms_service import env, new_room, rooms_service, user

pytestmark = pytest.mark.integration

VIDEO = "dQw4w9WgXcQ"


def _batches(histogram: Histogram) -> tuple[float, float]:
    """(statements, reads) so far."""
    (metric,) = histogram.collect()
    values = {s.name.rsplit("_", 1)[-1]: s.value for s in metric.samples}
    return values["count"], values["sum"]


async def _allowed(*_args: Any) -> None:
    return None  # rooms' access check is not what these tests are about


@pytest_asyncio.fixture
async def nc(tmp_path: Path) -> AsyncIterator[NATS]:
    server, url = devstack.start_nats(tmp_path / "nats")
    client = await nats.connect(url)
    try:
        yield client
    finally:
        await client.close()
        server.stop()


@pytest_asyncio.fixture
async def queue_and_rooms(engine: AsyncEngine, nc: NATS) -> AsyncIterator[tuple[QueueService, Any]]:
    rooms, _ = rooms_service(engine)
    await rooms_router(rooms).serve(nc, 16)
    queue = QueueService(engine, nc, 200)
    try:
        yield queue, rooms
    finally:
        await queue.aclose()
        await rooms.aclose()


async def test_queue_loads_asked_together_share_a_statement_each_with_its_room(
    queue_and_rooms: tuple[QueueService, Any],
) -> None:
    queue, rooms = queue_and_rooms
    owner = user("owner")
    codes = [await new_room(rooms, owner) for _ in range(6)]
    for i, code in enumerate(codes[:-1]):  # the last room's queue never changed
        for n in range(i + 1):
            await queue.add(env(owner, code), QueueAdd(video_id=VIDEO, title=f"{code} {n}"))
    before = _batches(SNAPSHOT_BATCH_SIZE)
    loads = await asyncio.gather(*(queue.load(env(owner, code), NoData()) for code in codes * 4))
    statements, reads = (a - b for a, b in zip(_batches(SNAPSHOT_BATCH_SIZE), before, strict=True))
    assert reads == len(codes) * 4
    assert statements < reads  # asked at once: fewer statements than reads
    for code, loaded in zip(codes * 4, loads, strict=True):
        i = codes.index(code)
        titles = [entry["title"] for entry in loaded["queue"]]
        if i < len(codes) - 1:
            assert titles == [f"{code} {n}" for n in range(i + 1)]
            # The last add's version: the room changed nothing else since.
            assert loaded["versions"]["queue"] == loaded["seq"]
        else:
            assert (titles, loaded["versions"]["queue"]) == ([], 0)
        async with queue.engine.connect() as conn:
            assert loaded["seq"] == await sequencer.current(conn, code)


async def test_a_queue_load_holds_exactly_the_changes_up_to_its_version(
    queue_and_rooms: tuple[QueueService, Any],
) -> None:
    """Adds commit while loads read: each load's queue is the adds up to the version it
    names, never one more (a version read apart from its queue could lag it)."""
    queue, rooms = queue_and_rooms
    owner = user("owner")
    code = await new_room(rooms, owner)
    async with queue.engine.connect() as conn:
        start = await sequencer.current(conn, code)
    assert start is not None

    async def adds() -> None:
        for n in range(30):
            await queue.add(env(owner, code), QueueAdd(video_id=VIDEO, title=str(n)))

    async def loads() -> list[dict[str, Any]]:
        seen = []
        for _ in range(60):
            seen.append(await queue.load(env(owner, code), NoData()))
        return seen

    _, *readers = await asyncio.gather(adds(), loads(), loads())
    for loaded in (load for reader in readers for load in reader):
        added = loaded["seq"] - start  # each add is the room's next version
        assert [e["title"] for e in loaded["queue"]] == [str(n) for n in range(added)]
        assert loaded["versions"]["queue"] == (loaded["seq"] if added else 0)


async def _send(groups: SendGroups, room: str, text: str) -> str:
    message = ChatMessage(id=uuid.uuid4().hex, user_id="u1", name="Ann", text=text, at_ms=1)
    await groups.store(room, message, uuid.uuid4().hex, {"message": message.model_dump()})
    return message.id


async def test_history_pages_asked_together_share_a_statement_each_with_its_page(
    engine: AsyncEngine,
) -> None:
    chat = ChatService(engine, None, None)  # type: ignore[arg-type]
    chat._access = _allowed  # type: ignore[method-assign]
    groups = SendGroups(db.single_statements(engine))
    codes = [uuid.uuid4().hex[:12] for _ in range(3)]
    async with engine.begin() as conn:
        for code in codes:
            await sequencer.create(conn, code)
    ids = {code: [await _send(groups, code, f"{code} {n}") for n in range(5)] for code in codes}
    # A moderator's deletion hides a message from every page.
    async with engine.begin() as conn:
        await conn.execute(chat_repo.mark_deleted(ids[codes[0]][3], "mod", 2))
    try:
        asks = [
            (codes[0], ChatHistory(limit=10)),
            (codes[1], ChatHistory(limit=2)),
            (codes[1], ChatHistory(limit=2, before_id=ids[codes[1]][2])),
            (codes[2], ChatHistory(limit=5)),
            ("NOSUCHROOM", ChatHistory()),
        ] * 3
        before = _batches(HISTORY_BATCH_SIZE)
        pages = await asyncio.gather(*(chat.history(env(user("ann"), c), h) for c, h in asks))
        statements, reads = (
            a - b for a, b in zip(_batches(HISTORY_BATCH_SIZE), before, strict=True)
        )
        assert (reads, statements < reads) == (len(asks), True)
        texts = [([m["text"] for m in p["messages"]], p["has_more"]) for p in pages]
        a, b, c = codes
        assert texts[:5] == [
            ([f"{a} 4", f"{a} 2", f"{a} 1", f"{a} 0"], False),  # newest first, 3 deleted
            ([f"{b} 4", f"{b} 3"], True),
            ([f"{b} 1", f"{b} 0"], False),  # the page before the anchor
            ([f"{c} {n}" for n in (4, 3, 2, 1, 0)], False),
            ([], False),
        ]
        assert texts[5:] == texts[:5] * 2
        for (code, _), page in zip(asks, pages, strict=True):
            # Each room's five messages were its versions 1-5, and nothing else changed it.
            expected = 0 if code == "NOSUCHROOM" else 5
            assert (page["seq"], page["versions"]["chat"]) == (expected, expected)
            for message in page["messages"]:
                assert ChatMessage.model_validate(message).model_dump() == message

        with pytest.raises(ServiceError) as missing:
            await chat.history(env(user("ann"), b), ChatHistory(before_id=ids[a][0]))
        assert missing.value.code is ErrorCode.NOT_FOUND  # an anchor of another room
    finally:
        await chat.aclose()


async def test_a_history_page_finds_its_anchor_by_id_and_reads_only_older_messages(
    engine: AsyncEngine,
) -> None:
    """The plan the batched reads keep (generic, sequential scans off): the anchor by its
    primary key, and the page a backward range scan of the room's messages from the anchor's
    version. Found by room the anchor walked every message of the room, and without the
    range a page far back read every newer message first."""
    pg = await db.keyed_connection(db.driver_dsn(engine))
    try:
        params = chat_repo.page_parameters([("ROOM1", "m1", 51), ("ROOM2", None, 51)])
        for _ in range(6):  # PostgreSQL's generic plan from the sixth execution on
            await pg.execute(chat_repo.PAGES_SQL, params, prepare=True)
        cur = await pg.execute("EXPLAIN " + chat_repo.PAGES_SQL, params)
        plan = "\n".join(line for (line,) in await cur.fetchall())
    finally:
        await pg.close()
    assert "Index Scan using pk_chat_messages" in plan, plan
    assert "Index Scan Backward using ix_chat_messages_room_v" in plan, plan
    assert "(v < COALESCE(" in plan, plan  # the anchor's version bounds the scan
