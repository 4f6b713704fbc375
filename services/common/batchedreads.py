"""Reads that arrive together go to PostgreSQL together: one prepared statement a batch.

A read asked of a service many times a second (rooms' access checks, the queue's and chat's
parts of every join's snapshot) cost more in SQLAlchemy, its pool and a round trip each than
in PostgreSQL. Here the questions that arrive while a batch is in the database go together in
the next one: one statement over arrays of their parameters, prepared once, on a connection
of the reader's own that autocommits (a read needs no transaction). The statement numbers
its questions with `WITH ORDINALITY` and returns that number as its column `i`; each
question gets the rows of its number, in the statement's order. Nothing is cached: each
answer is read after its question arrived, so it sees every change committed before it.

PostgreSQL only (the arrays are its); on other databases services keep their ordinary reads.
"""

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import psycopg
from prometheus_client import Histogram
from psycopg.rows import namedtuple_row

from . import db

MAX_BATCH = 256  # questions per statement: bounds its arrays
# A batch that takes longer than this (a connection that stopped answering) fails, and its
# connection is dropped: every later question waits behind a batch, so none may hang.
# Askers give up after 2 s (`bus.request`'s timeouts for these reads).
READ_TIMEOUT_S = 2.0
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

Question = TypeVar("Question")
# The statement's parameters for a batch of questions (arrays, one element a question).
Parameters = Callable[[Sequence[Question]], dict[str, Any]]


class BatchedReads(Generic[Question]):
    """Reads `sql` for batches of questions, one batch in the database at a time."""

    def __init__(
        self,
        dsn: str,
        sql: str,
        parameters: Parameters[Question],
        batch_size: Histogram,
        timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self._dsn = dsn
        self._sql = sql
        self._parameters = parameters
        self._batch_size = batch_size
        self._timeout_s = timeout_s
        self._waiting: list[tuple[Question, asyncio.Future[list[Any]]]] = []
        self._running: asyncio.Task[None] | None = None
        self._pg: psycopg.AsyncConnection[Any] | None = None
        self._closed = False

    async def read(self, question: Question) -> list[Any]:
        """The statement's rows for `question` (named tuples), in its order; [] for none.
        Raises what the batch raised: psycopg.OperationalError for a lost or stalled
        database (an outage to the command router)."""
        if self._closed:
            raise RuntimeError("the service is stopping")
        done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append((question, done))
        self._start()
        return await done

    async def aclose(self) -> None:
        self._closed = True
        waiting, self._waiting = self._waiting, []
        for _, done in waiting:
            done.set_exception(RuntimeError("the service is stopping"))
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(BaseException):
                await self._running
        await self._drop()

    def _start(self) -> None:
        if self._waiting and self._running is None and not self._closed:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            self._running = asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[Question, asyncio.Future[list[Any]]]]) -> None:
        self._batch_size.observe(len(batch))
        try:
            try:
                async with asyncio.timeout(self._timeout_s):
                    rows = await self._read([question for question, _ in batch])
            except TimeoutError:
                await self._drop()
                # An outage to the router (`unavailable`), as a lost connection is.
                raise psycopg.OperationalError("batched read timed out") from None
        except BaseException as exc:
            for _, done in batch:  # never leave a caller waiting
                if not done.done():
                    done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for i, (_, done) in enumerate(batch, start=1):
                if not done.done():
                    done.set_result(rows.get(i, []))
        finally:
            self._running = None
            self._start()

    async def _read(self, questions: list[Question]) -> dict[int, list[Any]]:
        if self._pg is None:
            self._pg = await db.keyed_connection(self._dsn)  # one plan for every batch size
        try:
            async with self._pg.cursor(row_factory=namedtuple_row) as cur:
                await cur.execute(self._sql, self._parameters(questions), prepare=True)
                by_question: dict[int, list[Any]] = {}
                for row in await cur.fetchall():
                    by_question.setdefault(row.i, []).append(row)
                return by_question
        except psycopg.OperationalError:
            await self._drop()  # lost (PostgreSQL restarting): the next batch connects again
            raise

    async def _drop(self) -> None:
        pg, self._pg = self._pg, None
        if pg is not None:
            with contextlib.suppress(Exception):
                await pg.close()
