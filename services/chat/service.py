"""The chat service's rules: who may send, read and delete, and in what order messages go.

A message is written in the transaction that takes the room's next version (the room lock,
services/common/sequencer.py), together with the request id that sent it, and published only
after that commits: an acknowledged message is durable, and a retried send is applied once.
"""

import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NATS
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import bus, db, sequencer
from services.common.batchedreads import BatchedReads
from services.common.contracts import events, subjects
from services.common.contracts.commands import ChatDelete, ChatHistory, ChatSend
from services.common.contracts.envelope import AccessQuery, AccessReply, CommandEnvelope
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import ChatDeleted, ChatMessage, UserRef
from services.common.idempotency import CommandLog
from services.common.jsonutil import now_ms
from services.common.keyedlocks import KeyedLocks
from services.common.roomevents import RoomEvents
from services.common.writes import WriteBatch

from . import repository as repo
from .metrics import HISTORY_BATCH_SIZE
from .models import ChatCommand
from .ratelimit import SlidingWindowLimiter
from .sends import SendGroups

# A change: runs in the locked transaction at version v, adds its writes to the batch and
# returns (reply, event data).
Change = Callable[[AsyncConnection, int, WriteBatch], Awaitable[tuple[dict[str, Any], Any]]]


def can_moderate(access: AccessReply, user: UserRef) -> bool:
    """Owners and operators delete messages in their room; admins everywhere."""
    return user.admin or (access.member and access.role in ("owner", "operator"))


class ChatService:
    def __init__(self, engine: AsyncEngine, nc: NATS, limiter: SlidingWindowLimiter) -> None:
        self.engine = engine
        # History reads, statement by statement (each sees what committed before it, as in a
        # READ COMMITTED transaction): no BEGIN and ROLLBACK round trips around them
        # (db.single_statements). (engine is None only in tests without a database.)
        self._reads: AsyncEngine = engine and db.single_statements(engine)
        self.nc = nc
        self.limiter = limiter
        self.commands = CommandLog(ChatCommand.__table__)
        self.room_events = RoomEvents(nc)
        # PostgreSQL sends a message in one statement; elsewhere in a transaction.
        postgres = engine is not None and engine.dialect.name == "postgresql"
        self._sends = SendGroups(db.single_statements(engine)) if postgres else None
        # History pages (every join's chat part) go in batches, one statement each.
        self._pages: BatchedReads[tuple[str, str | None, int]] | None = None
        if postgres:
            self._pages = BatchedReads(
                db.driver_dsn(engine), repo.PAGES_SQL, repo.page_parameters, HISTORY_BATCH_SIZE
            )
        # Serialise a room's commands in this replica, so they queue here rather than each
        # holding a pooled connection while waiting for the room's row lock.
        self._locks = KeyedLocks()

    async def _access(self, room: str, user: UserRef) -> AccessReply:
        reply = await bus.request(
            self.nc,
            subjects.command("rooms", "access"),
            AccessQuery(room=room, user_id=user.id),
            timeout_s=2.0,
        )
        access = AccessReply.model_validate(reply)
        if access.banned and not user.admin:
            raise ServiceError(ErrorCode.FORBIDDEN, "You are banned from this room.")
        if not access.member and not user.admin:
            raise ServiceError(ErrorCode.NOT_MEMBER)
        return access

    async def _in_room(self, env: CommandEnvelope, room: str, command: str, change: Change) -> Any:
        """Apply `change` at the room's next version, remember the reply under the request
        id in the same transaction, and publish the `chat` event after commit."""
        async with self._locks.hold(room):
            try:
                async with self.engine.begin() as conn:
                    v = await sequencer.bump(conn, room)
                    writes = WriteBatch()
                    reply, event_data = await change(conn, v, writes)
                    # One statement on PostgreSQL with the change's own writes.
                    writes.add(repo.chat_version_statement(conn, room, v))
                    writes.add(
                        self.commands.remember_statement(env.user.id, env.id, command, reply)
                    )
                    await writes.flush(conn)
            except (IntegrityError, ServiceError) as exc:
                # A retry of a request that committed (earlier, or concurrently): answer as
                # it did. The log is read only then, not before every command.
                return await self._recall_or_raise(env, command, exc)
        await self.room_events.publish(
            room, events.subject_for("chat", room), events.encode("chat", room, v, event_data)
        )
        return reply

    async def _recall_or_raise(self, env: CommandEnvelope, command: str, exc: Exception) -> Any:
        return await self.commands.recall_or_raise(self.engine, env.user.id, env.id, command, exc)

    async def _take_message_token(self, user: UserRef) -> None:
        verdict = await self.limiter.hit(user.id, now_ms())
        if not verdict.allowed:
            wait_s = max(1, math.ceil(verdict.retry_after_ms / 1000))
            raise ServiceError(ErrorCode.RATE_LIMITED, f"Too many messages; wait {wait_s} s.")

    async def send(self, env: CommandEnvelope, data: ChatSend) -> Any:
        room = _room(env)
        # No read of the request log up front: a retry of an applied send is caught by its
        # remembered request id at commit, or here when a check now refuses it.
        try:
            await self._access(room, env.user)
            await self._take_message_token(env.user)
        except ServiceError as exc:
            return await self._recall_or_raise(env, "send", exc)
        message = ChatMessage(
            id=uuid.uuid4().hex,
            user_id=env.user.id,
            name=env.user.name,
            text=data.text,
            at_ms=now_ms(),
        )

        if self._sends is not None:
            return await self._send_in_one_statement(env, room, message, self._sends)

        async def change(
            _conn: AsyncConnection, v: int, writes: WriteBatch
        ) -> tuple[dict[str, Any], Any]:
            writes.add(repo.insert_message(message, room, v))
            return {"message": message.model_dump()}, message.model_dump()

        return await self._in_room(env, room, "send", change)

    async def _send_in_one_statement(
        self, env: CommandEnvelope, room: str, message: ChatMessage, sends: SendGroups
    ) -> Any:
        """PostgreSQL: the room's next version, the message, the chat version and the
        remembered reply in one autocommitted statement, shared by the messages sent
        meanwhile (sends.py): as atomic as `_in_room`'s transaction at a third of its round
        trips."""
        reply = {"message": message.model_dump()}
        async with self._locks.hold(room):
            try:
                v = await sends.store(room, message, env.id, reply)
            except IntegrityError as exc:  # a retry of a send that committed: answer as it did
                return await self._recall_or_raise(env, "send", exc)
        if v is None:
            raise ServiceError(ErrorCode.NOT_FOUND, "No such room.")
        await self.room_events.publish(
            room,
            events.subject_for("chat", room),
            events.encode("chat", room, v, message.model_dump()),
        )
        return reply

    async def delete(self, env: CommandEnvelope, data: ChatDelete) -> Any:
        room = _room(env)
        try:
            access = await self._access(room, env.user)
            if not can_moderate(access, env.user):
                raise ServiceError(
                    ErrorCode.FORBIDDEN, "Only the owner and operators delete messages."
                )
        except ServiceError as exc:
            return await self._recall_or_raise(env, "delete", exc)

        async def change(
            conn: AsyncConnection, _v: int, writes: WriteBatch
        ) -> tuple[dict[str, Any], Any]:
            row = await repo.get_message(conn, room, data.message_id)
            if row is None or row.deleted_at_ms is not None:
                raise ServiceError(ErrorCode.NOT_FOUND, "No such message.")
            writes.add(repo.mark_deleted(row.id, env.user.id, now_ms()))
            return {"deleted": row.id}, ChatDeleted(deleted=row.id).model_dump()

        return await self._in_room(env, room, "delete", change)

    async def history(self, env: CommandEnvelope, data: ChatHistory) -> dict[str, Any]:
        """A page of visible messages, newest first, and the chat version it was read at: a
        message committed after it is not in the page but arrives as an event the client
        applies after it."""
        room = _room(env)
        await self._access(room, env.user)
        if self._pages is not None:
            return await self._page(room, data)
        # The version is read first and the page is limited to it.
        async with self._reads.connect() as conn:
            seq = await sequencer.current(conn, room) or 0  # see the gateway's snapshot
            chat_v = await repo.chat_version(conn, room)
            before_v = None
            if data.before_id is not None:
                anchor = await repo.get_message(conn, room, data.before_id)
                if anchor is None:
                    raise ServiceError(ErrorCode.NOT_FOUND, "No such message.")
                before_v = anchor.v
            rows = await repo.page(
                conn, room, upto_v=chat_v, before_v=before_v, limit=data.limit + 1
            )
        return {
            "messages": [repo.message_of(r) for r in rows[: data.limit]],
            "has_more": len(rows) > data.limit,
            "seq": seq,
            "versions": {"chat": chat_v},
        }

    async def _page(self, room: str, data: ChatHistory) -> dict[str, Any]:
        """`history` on PostgreSQL: the versions and the page in one statement, so from one
        snapshot (one statement for every read that arrived meanwhile)."""
        assert self._pages is not None
        rows = await self._pages.read((room, data.before_id, data.limit + 1))
        first = rows[0]
        if data.before_id is not None and first.anchor_v is None:
            raise ServiceError(ErrorCode.NOT_FOUND, "No such message.")
        messages = [repo.message_of(r) for r in rows if r.id is not None]
        return {
            "messages": messages[: data.limit],
            "has_more": len(messages) > data.limit,
            "seq": 0 if first.seq is None else int(first.seq),  # see the gateway's snapshot
            "versions": {"chat": 0 if first.chat_v is None else int(first.chat_v)},
        }

    async def aclose(self) -> None:
        if self._pages is not None:
            await self._pages.aclose()
        await self.room_events.aclose()


def _room(env: CommandEnvelope) -> str:
    if not env.room:
        raise ServiceError(ErrorCode.BAD_REQUEST, "room: required")
    return env.room
