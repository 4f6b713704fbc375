"""Pooled PostgreSQL connections are pinged only after they sat idle (services/common/db.py):
a command on a connection used a moment ago costs no extra round trip, and a connection the
server dropped while it was idle is replaced before a command meets it."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db

pytestmark = pytest.mark.integration

IDLE_S = 0.2


@pytest_asyncio.fixture
async def pinged(upkeep_db_url: str) -> AsyncIterator[tuple[AsyncEngine, list[Any]]]:
    engine = db.create_engine(upkeep_db_url, pool_size=1, ping_after_idle_s=IDLE_S)
    pings: list[Any] = []
    ping = engine.dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        pings.append(dbapi_conn)
        return ping(dbapi_conn)

    engine.dialect.do_ping = counted  # type: ignore[method-assign]
    yield engine, pings
    await engine.dispose()


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("select pg_backend_pid()"))).scalar_one())


async def test_a_connection_used_a_moment_ago_is_not_pinged(
    pinged: tuple[AsyncEngine, list[Any]],
) -> None:
    engine, pings = pinged
    first = await _backend_pid(engine)
    for _ in range(5):
        assert await _backend_pid(engine) == first  # the same pooled connection
    assert pings == []
    await asyncio.sleep(IDLE_S * 1.5)
    assert await _backend_pid(engine) == first
    assert len(pings) == 1


async def test_an_idle_connection_the_server_dropped_is_replaced(
    pinged: tuple[AsyncEngine, list[Any]], upkeep_db_url: str
) -> None:
    engine, pings = pinged
    dropped = await _backend_pid(engine)
    admin = upkeep_db_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("select pg_terminate_backend(%s)", (dropped,))
    await asyncio.sleep(IDLE_S * 1.5)
    # No error: the ping failed, and the pool connected again for this command.
    assert await _backend_pid(engine) != dropped
    assert len(pings) == 1
