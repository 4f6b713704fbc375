"""A database of its own for the integration tests (in the session's PostgreSQL), built by
the migrations, so what they create and delete touches no other test's rows."""

import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db, runtime
from services.rooms.service import RoomsService
from tests.support.rooms_service import Bus, rooms_service
from tests.support.system import migrate


@pytest.fixture(scope="session")
def upkeep_db_url(infra: dict[str, str]) -> Iterator[str]:
    url = infra["DATABASE_URL"]
    name = f"upkeep_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(url)
    admin = urlunsplit(parts._replace(scheme="postgresql"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    own = urlunsplit(parts._replace(path=f"/{name}"))
    migrate(own)
    yield own


@pytest_asyncio.fixture
async def engine(upkeep_db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(upkeep_db_url, pool_size=4)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture
async def rooms_bus(engine: AsyncEngine) -> AsyncIterator[tuple[RoomsService, Bus]]:
    """The rooms service in-process (tests/support/rooms_service.py), stopped after."""
    rooms, bus = rooms_service(engine)
    yield rooms, bus
    await rooms.aclose()


@pytest_asyncio.fixture
async def redis(infra: dict[str, str]) -> AsyncIterator[aioredis.Redis]:
    client = runtime.redis_client(infra["REDIS_URL"])
    yield client
    await client.aclose()
