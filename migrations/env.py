"""Alembic environment: one migration history; each service's tables in its own module."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

# Importing the models registers every service's tables on the shared metadata.
from services.auth import models as _auth  # noqa: F401
from services.chat import models as _chat  # noqa: F401
from services.common import sequencer as _sequencer  # noqa: F401
from services.common.db import Base, create_engine
from services.common.settings import CommonSettings
from services.queue import models as _queue  # noqa: F401
from services.rooms import models as _rooms  # noqa: F401

target_metadata = Base.metadata


def _url() -> str:
    return context.config.get_main_option("sqlalchemy.url") or CommonSettings().database_url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
    )
    with context.begin_transaction():
        context.run_migrations()


async def _online() -> None:
    engine = create_engine(_url(), pool_size=1)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_online())
