"""The queue service's rules: add, remove, move, load, and the next entry on advance."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NATS
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import bus, sequencer
from services.common.contracts import events, subjects
from services.common.contracts.commands import EntryRef, QueueAdd, QueueMove
from services.common.contracts.envelope import (
    AccessQuery,
    AccessReply,
    AdvanceReply,
    AdvanceRequest,
    CommandEnvelope,
)
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import UserRef
from services.common.idempotency import CommandLog
from services.common.jsonutil import now_ms
from services.common.keyedlocks import KeyedLocks

from . import repository as repo
from .models import QueueCommand
from .videoid import video_id_from


def _can_control(access: AccessReply, user: UserRef) -> bool:
    """The room's control mode also decides who reorders and removes others' entries."""
    if user.admin:
        return True
    mode = access.settings.control_mode
    if mode == "any":
        return access.member
    if mode == "operators":
        return access.role in ("owner", "operator")
    return access.role == "owner"


class QueueTx:
    """One command's view of one room's queue under the room lock."""

    def __init__(self, conn: AsyncConnection, room: str, v: int, state: Any) -> None:
        self.conn = conn
        self.room = room
        self.v = v
        self.current_entry_id: str | None = state.current_entry_id
        self.queue_v: int = state.queue_v
        self.changed = False

    async def entries(self) -> list[Any]:
        return await repo.queued(self.conn, self.room)

    async def commit(self) -> bytes | None:
        if not self.changed:
            return None
        self.v += 1
        self.queue_v = self.v
        await repo.save_room(
            self.conn, self.room, current_entry_id=self.current_entry_id, queue_v=self.v
        )
        await sequencer.advance_to(self.conn, self.room, self.v)
        data = [repo.to_contract(r).model_dump() for r in await self.entries()]
        return events.encode("queue", self.room, self.v, data)


class QueueService:
    def __init__(self, engine: AsyncEngine, nc: NATS, max_length: int) -> None:
        self.engine = engine
        self.nc = nc
        self.max_length = max_length
        self.commands = CommandLog(QueueCommand.__table__)
        self._locks = KeyedLocks()

    async def _access(self, room: str, user: UserRef) -> AccessReply:
        reply = await bus.request(
            self.nc,
            subjects.command("rooms", "access"),
            AccessQuery(room=room, user_id=user.id),
            timeout_s=2.0,
        )
        access = AccessReply.model_validate(reply)
        if not access.member and not user.admin:
            raise ServiceError(ErrorCode.NOT_MEMBER)
        return access

    async def _in_queue(
        self,
        env: CommandEnvelope | None,
        room: str,
        command: str,
        body: Callable[[QueueTx], Awaitable[Any]],
    ) -> Any:
        if env is not None:
            recalled = await self.commands.recall(self.engine, env.user.id, env.id, command)
            if recalled is not None:
                return recalled
        async with self._locks.hold(room):
            try:
                async with self.engine.begin() as conn:
                    v = await sequencer.lock(conn, room)
                    tx = QueueTx(conn, room, v, await repo.ensure_room(conn, room))
                    reply = await body(tx)
                    event = await tx.commit()
                    if env is not None:
                        await self.commands.remember(conn, env.user.id, env.id, command, reply)
            except IntegrityError:
                if env is None:
                    raise
                recalled = await self.commands.recall(self.engine, env.user.id, env.id, command)
                if recalled is None:
                    raise
                return recalled
            if event is not None:
                await self.nc.publish(events.subject_for("queue", room), event)
        return reply

    async def add(self, env: CommandEnvelope, data: QueueAdd) -> dict[str, Any]:
        room = _room(env)
        video_id = video_id_from(data.video_id, data.url)
        await self._access(room, env.user)

        async def body(tx: QueueTx) -> dict[str, Any]:
            entries = await tx.entries()
            if len(entries) >= self.max_length:
                raise ServiceError(ErrorCode.QUEUE_FULL)
            entry_id = uuid.uuid4().hex
            await repo.insert_entry(
                tx.conn,
                id=entry_id,
                room=room,
                video_id=video_id,
                title=data.title,
                duration_ms=data.duration_ms,
                thumbnail=data.thumbnail,
                added_by=env.user.id,
                added_by_name=env.user.name,
                pos=len(entries),
                state="queued",
                created_at_ms=now_ms(),
            )
            ids = [r.id for r in entries]
            if data.next:
                await repo.renumber(tx.conn, [entry_id, *ids])
            tx.changed = True
            row = await repo.get_entry(tx.conn, room, entry_id)
            return {"entry": repo.to_contract(row).model_dump()}

        return await self._in_queue(env, room, "add", body)

    async def remove(self, env: CommandEnvelope, data: EntryRef) -> dict[str, Any]:
        room = _room(env)
        access = await self._access(room, env.user)

        async def body(tx: QueueTx) -> dict[str, Any]:
            row = await repo.get_entry(tx.conn, room, data.entry_id)
            if row is None or row.state != "queued":
                raise ServiceError(ErrorCode.NOT_FOUND, "No such entry in the queue.")
            if row.added_by != env.user.id and not _can_control(access, env.user):
                raise ServiceError(ErrorCode.FORBIDDEN, "You may remove only your own entries.")
            await repo.set_state(tx.conn, row.id, "removed")
            tx.changed = True
            return {}

        return await self._in_queue(env, room, "remove", body)

    async def move(self, env: CommandEnvelope, data: QueueMove) -> dict[str, Any]:
        room = _room(env)
        access = await self._access(room, env.user)
        if not _can_control(access, env.user):
            raise ServiceError(ErrorCode.FORBIDDEN, "The room's control mode does not let you.")

        async def body(tx: QueueTx) -> dict[str, Any]:
            ids = [r.id for r in await tx.entries()]
            if data.entry_id not in ids:
                raise ServiceError(ErrorCode.NOT_FOUND, "No such entry in the queue.")
            ids.remove(data.entry_id)
            ids.insert(min(data.index, len(ids)), data.entry_id)
            await repo.renumber(tx.conn, ids)
            tx.changed = True
            return {}

        return await self._in_queue(env, room, "move", body)

    async def load(self, env: CommandEnvelope, _data: Any) -> dict[str, Any]:
        room = _room(env)
        await self._access(room, env.user)
        async with self.engine.connect() as conn:
            state = await repo.room_state(conn, room)
            rows = await repo.queued(conn, room)
        return {
            "queue": [repo.to_contract(r).model_dump() for r in rows],
            "versions": {"queue": state.queue_v if state else 0},
        }

    async def advance(self, request: AdvanceRequest) -> AdvanceReply:
        """The next entry after `after_entry_id`, taken off the queue once: a second advance
        past the same entry answers with the entry the first one took."""

        async def body(tx: QueueTx) -> dict[str, Any]:
            current = tx.current_entry_id
            if current is not None and current != request.after_entry_id:
                row = await repo.get_entry(tx.conn, tx.room, current)
                return {"entry": repo.to_contract(row).model_dump() if row else None}
            if current is not None:
                await repo.set_state(tx.conn, current, "done")
            entries = await tx.entries()
            nxt = entries[0] if entries else None
            if nxt is not None:
                await repo.set_state(tx.conn, nxt.id, "current")
            tx.current_entry_id = nxt.id if nxt else None
            tx.changed = True
            return {"entry": repo.to_contract(nxt).model_dump() if nxt else None}

        reply = await self._in_queue(None, request.room, "advance", body)
        return AdvanceReply.model_validate(reply)


def _room(env: CommandEnvelope) -> str:
    if not env.room:
        raise ServiceError(ErrorCode.BAD_REQUEST, "room: required")
    return env.room
