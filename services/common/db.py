"""The database engine every service creates once (in its lifespan), and the ORM base."""

from sqlalchemy import MetaData, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
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


def single_statements(engine: AsyncEngine) -> AsyncEngine:
    """The engine for work that is one statement (a read, or one atomic write): on
    PostgreSQL its connections autocommit, which spares the BEGIN and the COMMIT or ROLLBACK,
    two of a lone statement's three round trips. Same pool. SQLite keeps its transactions
    (its `begin` hook takes the write lock)."""
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def create_engine(url: str, pool_size: int = 20) -> AsyncEngine:
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
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,  # see Settings.db_pool_size
        pool_pre_ping=True,  # survive a PostgreSQL restart without a failed command
    )
