"""The database engine every service creates once (in its lifespan), and the ORM base."""

import time
from typing import Any

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import MetaData, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase

# Deterministic constraint names, so Alembic migrations are the same on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def driver_dsn(engine: AsyncEngine) -> str:
    """The engine's database for psycopg itself (for connections kept outside the pool)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def single_statements(engine: AsyncEngine) -> AsyncEngine:
    """The engine for work that is one statement (a read, or one atomic write): on
    PostgreSQL its connections autocommit, which spares the BEGIN and the COMMIT or ROLLBACK,
    two of a lone statement's three round trips. Same pool. SQLite keeps its transactions
    (its `begin` hook takes the write lock)."""
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


async def keyed_connection(dsn: str) -> psycopg.AsyncConnection[Any]:
    """An autocommit psycopg connection outside the pool (no checkout ping or bookkeeping
    per use), for statements that find every row they touch by a key. Generic plans: one plan
    serves every call, where PostgreSQL would re-plan a statement over arrays whenever its
    generic plan, costed for ten rows per array, looked dearer than a plan for the rows at
    hand. No sequential scans: costed for 10-100 rows, such generic plans read whole tables
    into hash joins once a few thousand rooms existed."""
    return await psycopg.AsyncConnection.connect(
        dsn,
        autocommit=True,
        connect_timeout=5,
        options="-c plan_cache_mode=force_generic_plan -c enable_seqscan=off",
    )


async def lock_then_read(
    conn: AsyncConnection, lock_sql: str, read_sql: str, params: dict[str, Any]
) -> tuple[list[Any], list[Any]]:
    """The rows of a lock statement and of a read after it, in `conn`'s transaction
    (PostgreSQL). The read is a statement of its own, so its snapshot is taken once the lock
    is held and sees what the lock's previous holder committed (locked and read in one
    statement, PostgreSQL re-reads only the locked rows after the wait). Both, with the
    transaction's BEGIN, go in one round trip (`pipelined`)."""
    driver = (await conn.get_raw_connection()).driver_connection
    if driver.autocommit:  # the lock would end with its statement (an AUTOCOMMIT engine)
        raise RuntimeError("the lock needs a transaction")
    locks, rows = await pipelined(conn, [(lock_sql, params), (read_sql, params)])
    return locks, rows


async def pipelined(
    conn: AsyncConnection, statements: list[tuple[str, dict[str, Any]]]
) -> list[list[Any]]:
    """Run `statements` in order in `conn`'s transaction (PostgreSQL), sent in one round
    trip (psycopg's pipeline mode); each one's rows (named tuples; [] for a statement that
    returns none). Each statement still runs after the one before it has finished: only the
    waits between them go."""
    driver = (await conn.get_raw_connection()).driver_connection
    async with driver.pipeline() as pipeline:
        cursors = []
        for sql, params in statements:
            cur = driver.cursor(row_factory=namedtuple_row)
            await cur.execute(sql, params)
            cursors.append(cur)
        await pipeline.sync()  # every result is in: a statement without rows shows no columns
        results = []
        for cur in cursors:
            results.append(await cur.fetchall() if cur.description is not None else [])
            await cur.close()
    return results


# A pooled connection idle for this long is pinged before it is used (see `_ping_when_idle`).
PING_AFTER_IDLE_S = 1.0


def create_engine(
    url: str, pool_size: int = 20, ping_after_idle_s: float = PING_AFTER_IDLE_S
) -> AsyncEngine:
    if is_sqlite(url):
        # SQLite has one writer: wait for the lock rather than fail (the smallest setups run
        # one replica per service, so waits are short).
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # Let SQLAlchemy, not the driver, open transactions (see _begin).
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn) -> None:  # type: ignore[no-untyped-def]
            # Take the write lock up front: a read-then-write transaction in WAL mode would
            # otherwise fail with SQLITE_BUSY instead of waiting when another writer commits.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=0)  # see Settings
    _ping_when_idle(engine, ping_after_idle_s)
    return engine


def _ping_when_idle(engine: AsyncEngine, after_idle_s: float) -> None:
    """Ping a pooled connection before use only if it has been idle `after_idle_s`.

    SQLAlchemy's `pool_pre_ping` pings on every checkout: a round trip before every command's
    transaction (a queue command spent one of its four round trips on it, the access check
    that chat and the queue ask of rooms one of two). A connection that was used a moment ago
    is alive but for a server that went away within that moment; that command fails, and
    SQLAlchemy's disconnect handling then drops every connection the pool held from before
    it. One idle longer (across a restart of PostgreSQL, which takes longer than this) is
    pinged, and replaced if the ping fails (the pool retries the checkout on
    DisconnectionError)."""
    pool = engine.sync_engine.pool
    dialect = engine.dialect

    @event.listens_for(pool, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < after_idle_s:
            return  # new, or used a moment ago
        try:
            alive = dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise DisconnectionError("idle connection failed its ping") from exc
        if not alive:
            raise DisconnectionError("idle connection failed its ping")
