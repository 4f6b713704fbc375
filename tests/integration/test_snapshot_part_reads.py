"""The queue's and chat's parts of a join snapshot (`queue.load`, `chat.history`) are read
statement by statement on autocommit connections: each statement sees what committed before
it, as in a READ COMMITTED transaction, without a BEGIN and a ROLLBACK round trip around
them. A join storm asks for both once per join."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.chat.service import ChatService
from services.common import sequencer
from services.common.contracts.commands import ChatHistory, NoData
from services.queue.service import QueueService
from tests.support.rooms_service import env, user

pytestmark = pytest.mark.integration


async def _status_after_the_first_read(
    monkeypatch: pytest.MonkeyPatch, read: Callable[[], Awaitable[Any]]
) -> list[TransactionStatus]:
    """The connection's transaction status once the part's first statement (the room's
    version) has run: INTRANS inside a transaction, IDLE when it autocommitted."""
    seen: list[TransactionStatus] = []
    current = sequencer.current

    async def watched(conn: AsyncConnection, room: str) -> int | None:
        version = await current(conn, room)
        raw = await conn.get_raw_connection()
        seen.append(raw.driver_connection.info.transaction_status)
        return version

    monkeypatch.setattr(sequencer, "current", watched)
    await read()
    return seen


async def _allowed(*_args: Any) -> None:
    return None  # rooms' access check is not what these tests are about


async def test_queue_load_reads_outside_a_transaction(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = QueueService(engine, None, 200)  # type: ignore[arg-type]
    monkeypatch.setattr(queue, "_access", _allowed)
    read = lambda: queue.load(env(user("ann"), "room1"), NoData())  # noqa: E731
    assert await _status_after_the_first_read(monkeypatch, read) == [TransactionStatus.IDLE]
    await queue.aclose()


async def test_chat_history_reads_outside_a_transaction(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = ChatService(engine, None, None)  # type: ignore[arg-type]
    monkeypatch.setattr(chat, "_access", _allowed)
    read = lambda: chat.history(env(user("ann"), "room1"), ChatHistory())  # noqa: E731
    assert await _status_after_the_first_read(monkeypatch, read) == [TransactionStatus.IDLE]
