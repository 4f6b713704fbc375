"""Chat messages stored in groups (services/chat/sends.py) on real PostgreSQL: messages sent
meanwhile share one statement and each still gets its room's next version, its stored row,
the room's chat version and its remembered reply; a retried request id among them and a room
that is gone are answered as a lone send answers them."""

import asyncio
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.chat import sends
from services.chat.models import ChatCommand, ChatMessageRow, ChatRoom
from services.common import db, sequencer
from services.common.contracts.models import ChatMessage

pytestmark = pytest.mark.integration


def message(text: str) -> ChatMessage:
    return ChatMessage(id=uuid.uuid4().hex, user_id="u1", name="Ann", text=text, at_ms=1)


async def new_rooms(engine: AsyncEngine, count: int) -> list[str]:
    codes = [uuid.uuid4().hex[:12] for _ in range(count)]
    async with engine.begin() as conn:
        for code in codes:
            await sequencer.create(conn, code)
    return codes


def group_sizes() -> dict[float, float]:
    (metric,) = sends.GROUP_SIZE.collect()
    return {float(s.labels["le"]): s.value for s in metric.samples if s.name.endswith("_bucket")}


async def test_messages_sent_meanwhile_share_a_statement(engine: AsyncEngine) -> None:
    groups = sends.SendGroups(db.single_statements(engine))
    codes = await new_rooms(engine, 12)
    before = group_sizes()
    sent = [message(f"hello {i}") for i in range(len(codes))]
    request_ids = [uuid.uuid4().hex for _ in codes]
    versions = await asyncio.gather(
        *(
            groups.store(code, m, rid, {"message": m.model_dump()})
            for code, m, rid in zip(codes, sent, request_ids, strict=True)
        )
    )
    after = group_sizes()
    assert after[1.0] - before.get(1.0, 0) < len(codes), "some messages shared a statement"
    assert versions == [1] * len(codes)
    async with engine.connect() as conn:
        for code, m, rid in zip(codes, sent, request_ids, strict=True):
            row = (
                await conn.execute(select(ChatMessageRow).where(ChatMessageRow.id == m.id))
            ).one()
            assert (row.room, row.v, row.text) == (code, 1, m.text)
            chat_v = await conn.scalar(select(ChatRoom.chat_v).where(ChatRoom.room == code))
            assert chat_v == 1
            assert await sequencer.current(conn, code) == 1
            remembered = await conn.scalar(
                select(ChatCommand.command).where(ChatCommand.request_id == rid)
            )
            assert remembered == "send"


async def test_a_room_keeps_counting_across_groups(engine: AsyncEngine) -> None:
    groups = sends.SendGroups(db.single_statements(engine))
    (code, other) = await new_rooms(engine, 2)
    seen = []
    for i in range(3):  # one room's messages come one at a time (its lock), others beside
        v, _ = await asyncio.gather(
            groups.store(code, message(f"m{i}"), uuid.uuid4().hex, {}),
            groups.store(other, message(f"o{i}"), uuid.uuid4().hex, {}),
        )
        seen.append(v)
    assert seen == [1, 2, 3]


async def test_a_retried_request_and_a_missing_room_are_answered_alone(
    engine: AsyncEngine,
) -> None:
    groups = sends.SendGroups(db.single_statements(engine))
    code, other, third = await new_rooms(engine, 3)
    retried = uuid.uuid4().hex
    assert await groups.store(code, message("first"), retried, {}) == 1
    failed_before = group_sizes()
    # The first goes alone (nothing was waiting); the next three form a group, which the
    # remembered request id fails whole: each of them is then stored alone.
    results = await asyncio.gather(
        groups.store(other, message("fresh"), uuid.uuid4().hex, {}),
        groups.store(code, message("again"), retried, {}),
        groups.store("nosuchroom", message("lost"), uuid.uuid4().hex, {}),
        groups.store(third, message("also fresh"), uuid.uuid4().hex, {}),
        return_exceptions=True,
    )
    after = group_sizes()
    three_or_four = (after[4.0] - failed_before.get(4.0, 0)) - (after[2.0] - failed_before[2.0])
    assert three_or_four == 1, "a group of three was tried"
    assert results[0] == 1
    assert isinstance(results[1], IntegrityError), "the service answers it from the log"
    assert results[2:] == [None, 1]
    async with engine.connect() as conn:
        assert await sequencer.current(conn, code) == 1, "the retry stored nothing"


async def test_a_group_takes_one_message_of_a_room(engine: AsyncEngine) -> None:
    """Two messages of one room waiting at once (a caller gave up and released the room's
    lock) go in successive groups, at successive versions."""
    groups = sends.SendGroups(db.single_statements(engine))
    (code,) = await new_rooms(engine, 1)
    before = group_sizes()
    versions = await asyncio.gather(
        *(groups.store(code, message(f"m{i}"), uuid.uuid4().hex, {}) for i in range(3))
    )
    assert versions == [1, 2, 3]
    after = group_sizes()
    assert after[1.0] - before.get(1.0, 0) == 3, "three groups of one"
