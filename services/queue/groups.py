"""Queue commands committed in groups (PostgreSQL).

Run one at a time, a queue command cost its replica about 2.4 ms of CPU under a closed-loop
load (16 in flight, stack on one core: 279 commands/s, the queue process at 68 % of the core),
nearly all of it SQLAlchemy and psycopg around its own transaction: a pooled connection, the
BEGIN with the lock and the read, the write, the commit. As rooms does for playback controls
(services/rooms/controls.py) and chat for messages (services/chat/sends.py), every command
that arrives while a group is in the database joins the next group, and a group is one
transaction whatever its size:

1. the BEGIN, one statement locking every room of the group (their sequence rows, in room
   order, so two replicas' groups cannot deadlock) and one reading their queues, in one
   round trip;
2. each command changes its room's queue in memory (`QueueTx`), in arrival order;
3. each command's writes go as the one statement they are alone (its change, its room's new
   version, its remembered reply); then the commit.

Then each command's `queue` event is published (with its caller's trace context) and the
command is answered, even if its caller has gone: the change is committed.

Anything unusual goes alone, through the ordinary path (`QueueService._in_queue`'s own
transaction), which answers it as it always did: a command its rules refuse (that path also
answers a retried request from its log), a room that is gone, and every command of a group
that fails as a whole (a request id already remembered, a lost connection).

Order: the caller holds its room's local lock (`KeyedLocks`) from submission until it is
answered, and a group takes one command of a room at most, so one room's commands still run
one at a time in arrival order on this replica.

Not one statement for the whole group's writes: its shape changed with the mix of commands,
SQLAlchemy's statement cache then held ~55 MB of them (queue RSS 87 → 142-153 MB) and the
slowest commands doubled; compiled afresh each time, they cost the throughput they saved.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from opentelemetry import context as otel_context
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import bus, tracing
from services.common.contracts.errors import ServiceError
from services.common.grouping import OneGroupAtATime
from services.common.writes import WriteBatch

from . import repository as repo
from .transaction import QueueTx

log = logging.getLogger(__name__)

MAX_GROUP = 64  # commands per transaction: bounds a group's statement and its lock set

GROUP_SIZE = Histogram(
    "sharetube_queue_command_group_size",
    "Queue commands committed together in one transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
LEFT_ALONE = Counter(
    "sharetube_queue_commands_alone_total",
    "Queue commands a group left to the ordinary path, by why",
    ["reason"],  # refused (its rules raised), no_room, group_failed
)

Body = Callable[[QueueTx], Awaitable[Any]]
Remember = Callable[[Any], Any]  # the reply -> the INSERT remembering it
Publish = Callable[[str, bytes], Awaitable[None]]  # room, `queue` event


@dataclass(slots=True)
class Outcome:
    reply: Any


@dataclass(slots=True)
class Change:
    room: str
    body: Body
    remember: Remember
    done: asyncio.Future[Outcome | None]  # None: take the ordinary path
    trace_context: otel_context.Context = field(default_factory=otel_context.get_current)


@dataclass(slots=True)
class _Applied:
    change: Change
    reply: Any
    event: bytes | None


class CommandGroups:
    """Applies queue commands in groups, one group in the database at a time."""

    def __init__(self, engine: AsyncEngine, publish: Publish) -> None:
        self._engine = engine
        self._publish = publish
        self._groups = OneGroupAtATime(self._run, attrgetter("room"), MAX_GROUP)

    async def apply(self, room: str, body: Body, remember: Remember) -> Outcome | None:
        """Apply `body` to `room`'s queue in the next group: its reply, or None when the
        ordinary path must take it (see the module's docstring)."""
        done: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self._groups.add(Change(room, body, remember, done))
        return await done

    async def aclose(self) -> None:
        """Stop: a group under way is cancelled; its callers take the ordinary path."""
        await self._groups.aclose()

    async def _run(self, group: list[Change]) -> None:
        GROUP_SIZE.observe(len(group))
        try:
            await self._commit(group)
        except Exception:
            log.exception("queue command group failed")
        finally:
            for change in group:  # never leave a caller waiting
                _settle(change, None)

    async def _commit(self, group: list[Change]) -> None:
        with tracing.group_span("queue group commit", [c.trace_context for c in group]):
            try:
                applied = await self._transaction(group)
            except Exception as exc:
                # A remembered request id (a retry) is the ordinary path's to answer.
                if not isinstance(exc, IntegrityError) and not bus.is_outage(exc):
                    log.warning("queue command group of %d rolled back: %r", len(group), exc)
                LEFT_ALONE.labels("group_failed").inc(len(group))
                return  # every caller takes the ordinary path (`_run` settles them)
        for outcome in applied:
            if outcome.event is not None:
                token = otel_context.attach(outcome.change.trace_context)
                try:
                    await self._publish(outcome.change.room, outcome.event)
                except Exception:  # the service's publish repairs what it could not send
                    log.exception("queue event of %s not published", outcome.change.room)
                finally:
                    otel_context.detach(token)
            _settle(outcome.change, Outcome(outcome.reply))

    async def _transaction(self, group: list[Change]) -> list[_Applied]:
        """Lock, read, apply and write the group; what was applied. What is not applied is
        left unsettled here, for the ordinary path."""
        applied: list[_Applied] = []
        async with self._engine.begin() as conn:
            rooms = await repo.lock_and_read_many(conn, sorted({c.room for c in group}))
            writes: list[WriteBatch] = []  # each command's, in order
            for change in group:
                if change.room not in rooms:
                    LEFT_ALONE.labels("no_room").inc()
                    continue
                v, queue = rooms[change.room]
                tx = QueueTx(conn, change.room, v, queue)
                try:
                    reply = await change.body(tx)
                except ServiceError:
                    LEFT_ALONE.labels("refused").inc()
                    continue
                tx.writes.add(change.remember(reply))
                event = tx.prepare_commit()
                writes.append(tx.writes)
                applied.append(_Applied(change, reply, event))
            for batch in writes:
                await batch.flush(conn)
        return applied


def _settle(change: Change, outcome: Outcome | None) -> None:
    """Answer a change, unless it is answered already or its caller has gone."""
    if not change.done.done():
        change.done.set_result(outcome)
