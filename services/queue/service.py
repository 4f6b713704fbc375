"""The queue service's rules: add, remove, move, shuffle, load, and the next entry on advance.

Who may do what is decided by rooms, which owns roles and the permission matrix: every
command asks `st.rooms.cmd.access` with its name and refuses what rooms refuses.
"""

import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NATS
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import bus, db, sequencer
from services.common.batchedreads import BatchedReads
from services.common.contracts import events, subjects
from services.common.contracts.commands import EntryRef, QueueAdd, QueueMove
from services.common.contracts.envelope import (
    AccessQuery,
    AccessReply,
    AdvanceReply,
    AdvanceRequest,
    CommandEnvelope,
    QueueLengthsQuery,
    QueueLengthsReply,
)
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import UserRef
from services.common.idempotency import CommandLog
from services.common.keyedlocks import KeyedLocks
from services.common.roomevents import RoomEvents

from . import repository as repo
from .groups import CommandGroups
from .metrics import SNAPSHOT_BATCH_SIZE
from .models import QueueCommand
from .transaction import QueueTx
from .videoid import video_id_from


class QueueService:
    def __init__(self, engine: AsyncEngine, nc: NATS, max_length: int) -> None:
        self.engine = engine
        # Reads of a snapshot's part, statement by statement (each sees what committed before
        # it, as in a READ COMMITTED transaction): no BEGIN and ROLLBACK round trips around
        # them (db.single_statements). (engine is None only in tests without a database.)
        self._reads: AsyncEngine = engine and db.single_statements(engine)
        # On PostgreSQL the snapshots' reads go in batches, one statement each.
        postgres = engine is not None and engine.dialect.name == "postgresql"
        self._snapshots: BatchedReads[str] | None = None
        if postgres:
            self._snapshots = BatchedReads(
                db.driver_dsn(engine),
                repo.SNAPSHOTS_SQL,
                repo.snapshot_parameters,
                SNAPSHOT_BATCH_SIZE,
            )
        self.nc = nc
        self.max_length = max_length
        self.commands = CommandLog(QueueCommand.__table__)
        self._locks = KeyedLocks()
        # PostgreSQL commits members' commands in groups (groups.py); elsewhere each in a
        # transaction of its own.
        self._groups = CommandGroups(engine, self._publish) if postgres else None
        self.room_events = RoomEvents(nc)

    async def aclose(self) -> None:
        if self._groups is not None:
            await self._groups.aclose()
        if self._snapshots is not None:
            await self._snapshots.aclose()
        await self.room_events.aclose()

    async def _publish(self, room: str, event: bytes) -> None:
        await self.room_events.publish(room, events.subject_for("queue", room), event)

    async def _access(self, room: str, user: UserRef, command: str) -> AccessReply:
        """Rooms' answer for `command`; raises its refusal. `queue.remove` is the exception:
        its refusal is about others' entries, so the caller decides with the entry in hand."""
        reply = await bus.request(
            self.nc,
            subjects.command("rooms", "access"),
            AccessQuery(room=room, user_id=user.id, command=command, admin=user.admin),
            timeout_s=2.0,
        )
        access = AccessReply.model_validate(reply)
        if access.denied is ErrorCode.NOT_MEMBER or (
            access.denied is not None and command != "queue.remove"
        ):
            raise ServiceError(access.denied)
        return access

    async def _in_queue(
        self,
        env: CommandEnvelope | None,
        room: str,
        command: str,
        body: Callable[[QueueTx], Awaitable[Any]],
    ) -> Any:
        async with self._locks.hold(room):
            if env is not None and self._groups is not None:
                outcome = await self._groups.apply(
                    room,
                    body,
                    lambda reply: self.commands.remember_statement(
                        env.user.id, env.id, command, reply
                    ),
                )
                if outcome is not None:
                    return outcome.reply
            try:
                async with self.engine.begin() as conn:
                    v, queue = await repo.lock_and_read(conn, room)
                    tx = QueueTx(conn, room, v, queue)
                    reply = await body(tx)
                    if env is not None:
                        # With the command's writes (one statement on PostgreSQL); a retry
                        # of a request that committed fails here, as a duplicate.
                        tx.writes.add(
                            self.commands.remember_statement(env.user.id, env.id, command, reply)
                        )
                    event = await tx.commit()
            except (IntegrityError, ServiceError) as exc:
                if env is None:
                    raise
                # A retry of a request that was applied: answer as it did.
                return await self.commands.recall_or_raise(
                    self.engine, env.user.id, env.id, command, exc
                )
            if event is not None:
                await self._publish(room, event)
        return reply

    async def add(self, env: CommandEnvelope, data: QueueAdd) -> dict[str, Any]:
        room = _room(env)
        video_id = video_id_from(data.video_id, data.url)
        access = await self._access(room, env.user, "queue.add")
        # The room's per-user cap stops one member flooding the queue; whoever runs the room
        # is trusted with it.
        cap = access.settings.queue_limit_per_user
        capped = cap > 0 and access.role == "member" and not env.user.admin

        async def body(tx: QueueTx) -> dict[str, Any]:
            if len(tx.entries) >= self.max_length:
                raise ServiceError(ErrorCode.QUEUE_FULL)
            if capped and sum(1 for e in tx.entries if e.added_by == env.user.id) >= cap:
                raise ServiceError(
                    ErrorCode.USER_QUEUE_FULL, f"This room allows {cap} queued entries each."
                )
            entry = repo.Entry(
                id=uuid.uuid4().hex,
                video_id=video_id,
                title=data.title,
                duration_ms=data.duration_ms,
                thumbnail=data.thumbnail,
                added_by=env.user.id,
                added_by_name=env.user.name,
                pos=0,
            )
            tx.add(entry, at_head=data.next)
            return {"entry": entry.contract()}

        return await self._in_queue(env, room, "add", body)

    async def remove(self, env: CommandEnvelope, data: EntryRef) -> dict[str, Any]:
        room = _room(env)
        access = await self._access(room, env.user, "queue.remove")

        async def body(tx: QueueTx) -> dict[str, Any]:
            entry = tx.find(data.entry_id)
            if entry is None:
                raise ServiceError(ErrorCode.NOT_FOUND, "No such entry in the queue.")
            if entry.added_by != env.user.id and access.denied is not None:
                raise ServiceError(access.denied, "You may remove only your own entries.")
            tx.take(entry, "removed")
            return {}

        return await self._in_queue(env, room, "remove", body)

    async def move(self, env: CommandEnvelope, data: QueueMove) -> dict[str, Any]:
        room = _room(env)
        await self._access(room, env.user, "queue.move")

        async def body(tx: QueueTx) -> dict[str, Any]:
            ids = [e.id for e in tx.entries]
            if data.entry_id not in ids:
                raise ServiceError(ErrorCode.NOT_FOUND, "No such entry in the queue.")
            ids.remove(data.entry_id)
            ids.insert(min(data.index, len(ids)), data.entry_id)
            tx.reorder(ids)
            return {}

        return await self._in_queue(env, room, "move", body)

    async def shuffle(self, env: CommandEnvelope, _data: Any) -> dict[str, Any]:
        room = _room(env)
        await self._access(room, env.user, "queue.shuffle")

        async def body(tx: QueueTx) -> dict[str, Any]:
            ids = [e.id for e in tx.entries]
            if len(ids) > 1:
                random.shuffle(ids)  # not a secret: the default generator is fine
                tx.reorder(ids)
            return {}

        return await self._in_queue(env, room, "shuffle", body)

    async def load(self, env: CommandEnvelope, _data: Any) -> dict[str, Any]:
        room = _room(env)
        await self._access(room, env.user, "queue.load")
        if self._snapshots is not None:
            # The version and the queue in one statement: the queue holds exactly the
            # changes up to that version (see the gateway's snapshot composition).
            seq, queue = repo.snapshot_of(await self._snapshots.read(room))
        else:
            async with self._reads.connect() as conn:
                # The room's version first: the queue read after it includes every change
                # up to it.
                seq = await sequencer.current(conn, room) or 0
                queue = await repo.read_room(conn, room)
        return {
            "seq": seq,
            "queue": [e.contract() for e in queue.entries],
            "versions": {"queue": queue.queue_v},
        }

    async def advance(self, request: AdvanceRequest) -> AdvanceReply:
        """The next entry after `after_entry_id`, taken off the queue once: a second advance
        past the same entry answers with the entry the first one took."""

        async def body(tx: QueueTx) -> dict[str, Any]:
            current = tx.current_entry_id
            if current is not None and current != request.after_entry_id:
                entry = await repo.get_entry(tx.conn, tx.room, current)
                return {"entry": entry.contract() if entry else None}
            if current is not None:
                tx.finish(current)
            nxt = tx.entries[0] if tx.entries else None
            if nxt is not None:
                tx.take(nxt, "current")
            tx.current_entry_id = nxt.id if nxt else None
            tx.changed = True
            return {"entry": nxt.contract() if nxt else None}

        reply = await self._in_queue(None, request.room, "advance", body)
        return AdvanceReply.model_validate(reply)

    async def lengths(self, query: QueueLengthsQuery) -> QueueLengthsReply:
        """Entries waiting per room, for rooms' admin overview (no access check: only
        services may ask, and rooms has checked the admin)."""
        async with self.engine.connect() as conn:
            return QueueLengthsReply(lengths=await repo.count_queued_in(conn, query.rooms))


def _room(env: CommandEnvelope) -> str:
    if not env.room:
        raise ServiceError(ErrorCode.BAD_REQUEST, "room: required")
    return env.room
