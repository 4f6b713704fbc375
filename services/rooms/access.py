"""Access checks read in batches: the question chat and the queue ask before every command.

Every chat message and queue command asks rooms whether its caller may (`st.rooms.cmd.access`):
one read of the room's settings and the caller's membership. Through SQLAlchemy's pool that
read cost rooms about 0.6 ms of CPU, as much as chat spent on the message it guarded. Here
the questions that arrive while a batch is in the database go together in the next one: one
prepared statement over arrays of (room, user), on a connection of this reader's own that
autocommits (a lone read needs no transaction). Nothing is cached: each answer is read after
its question arrived, so it sees every change committed before.

PostgreSQL only (the arrays are its); other databases keep the ordinary read.
"""

import asyncio
import contextlib
from typing import Any

import psycopg
from prometheus_client import Histogram
from psycopg.rows import namedtuple_row

from services.common import db

MAX_BATCH = 256  # questions per statement: bounds its arrays
# A batch that takes longer than this (a connection that stopped answering) fails, and its
# connection is dropped: every later question waits behind a batch, so none may hang. Askers
# give up after 2 s (`bus.request` in chat and the queue).
READ_TIMEOUT_S = 2.0

BATCH_SIZE = Histogram(
    "sharetube_rooms_access_batch_size",
    "Access checks read together in one statement",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

# The columns of repository.settings_of and transaction.membership_of, by question (`i`).
_READ = """
SELECT c.i, r.owner_id, r.name, r.visibility, r.control_mode, r.ad_sync, r.auto_advance,
       r.vote_skip_ratio, r.queue_limit_per_user,
       m.name AS m_name, m.role AS m_role, m.joined_at_ms AS m_joined_at_ms,
       m.banned AS m_banned
FROM unnest(%(rooms)s::text[], %(users)s::text[]) WITH ORDINALITY AS c(room, user_id, i)
JOIN rooms_rooms r ON r.code = c.room
LEFT JOIN rooms_members m ON m.room = c.room AND m.user_id = c.user_id
"""

_Question = tuple[str, str, asyncio.Future[Any]]


class AccessReads:
    """Reads (room, user) questions in batches, one batch in the database at a time."""

    def __init__(self, dsn: str, timeout_s: float = READ_TIMEOUT_S) -> None:
        self._dsn = dsn
        self._timeout_s = timeout_s
        self._waiting: list[_Question] = []
        self._running: asyncio.Task[None] | None = None
        self._pg: psycopg.AsyncConnection[Any] | None = None
        self._closed = False

    async def read(self, room: str, user_id: str) -> Any | None:
        """The room's settings and owner with `user_id`'s membership (`m_*` columns, None
        when not a member); None when there is no such room."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((room, user_id, done))
        self._start()
        return await done

    async def aclose(self) -> None:
        self._closed = True
        waiting, self._waiting = self._waiting, []
        for _, _, done in waiting:
            done.set_exception(RuntimeError("rooms is stopping"))
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(BaseException):
                await self._running
        await self._drop()

    def _start(self) -> None:
        if self._waiting and self._running is None and not self._closed:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            self._running = asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[_Question]) -> None:
        BATCH_SIZE.observe(len(batch))
        try:
            try:
                async with asyncio.timeout(self._timeout_s):
                    rows = await self._read(batch)
            except TimeoutError:
                await self._drop()
                # An outage to the router (`unavailable`), as a lost connection is.
                raise psycopg.OperationalError("access read timed out") from None
        except BaseException as exc:
            for _, _, done in batch:  # never leave a caller waiting
                if not done.done():
                    done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for i, (_, _, done) in enumerate(batch, start=1):
                if not done.done():
                    done.set_result(rows.get(i))
        finally:
            self._running = None
            self._start()

    async def _read(self, batch: list[_Question]) -> dict[int, Any]:
        if self._pg is None:
            self._pg = await self._connect()
        params = {"rooms": [q[0] for q in batch], "users": [q[1] for q in batch]}
        try:
            async with self._pg.cursor(row_factory=namedtuple_row) as cur:
                await cur.execute(_READ, params, prepare=True)
                return {row.i: row for row in await cur.fetchall()}
        except psycopg.OperationalError:
            await self._drop()  # lost (PostgreSQL restarting): the next batch connects again
            raise

    async def _drop(self) -> None:
        pg, self._pg = self._pg, None
        if pg is not None:
            with contextlib.suppress(Exception):
                await pg.close()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await db.keyed_connection(self._dsn)  # one plan for every batch size
