"""All of the chat service's SQL."""

from typing import Any

import orjson
from sqlalchemy import LargeBinary, bindparam, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common import sequencer
from services.common.contracts.models import ChatMessage

from .models import ChatMessageRow, ChatRoom

_messages = ChatMessageRow.__table__
_rooms = ChatRoom.__table__


def to_contract(row: Any) -> ChatMessage:
    return ChatMessage(
        id=row.id, user_id=row.user_id, name=row.name, text=row.text, at_ms=row.at_ms
    )


def insert_message(message: ChatMessage, room: str, v: int) -> Any:
    return _messages.insert().values(room=room, v=v, **message.model_dump())


async def get_message(conn: AsyncConnection, room: str, message_id: str) -> Any | None:
    stmt = select(_messages).where(_messages.c.room == room, _messages.c.id == message_id)
    return (await conn.execute(stmt)).first()


# A message in one statement: the room's next version (its row lock, held to the end of
# the statement, serialises it with every other change of the room), the message at that
# version, the chat version, and the reply under the request id. Autocommitted, it is as
# atomic as a transaction: a request id already remembered fails it whole.
_SEND = text(
    """
WITH seq AS (
  UPDATE room_seq SET v = v + 1 WHERE room = :room RETURNING v
), message AS (
  INSERT INTO chat_messages (id, room, v, user_id, name, text, at_ms)
  SELECT :id, :room, seq.v, :user_id, :name, :text, :at_ms FROM seq
), version AS (
  INSERT INTO chat_rooms (room, chat_v) SELECT :room, seq.v FROM seq
  ON CONFLICT (room) DO UPDATE SET chat_v = excluded.chat_v
), remembered AS (
  INSERT INTO chat_commands (user_id, request_id, command, reply, at_ms)
  SELECT :user_id, :request_id, 'send', :reply, :at_ms FROM seq
)
SELECT v FROM seq
"""
).bindparams(bindparam("reply", type_=LargeBinary))


async def send_message(
    conn: AsyncConnection, room: str, message: ChatMessage, request_id: str, reply: Any
) -> int | None:
    """Store `message` at the room's next version (PostgreSQL); that version, or None
    when there is no such room. A remembered request id raises IntegrityError."""
    params = {**message.model_dump(), "room": room, "request_id": request_id}
    params["reply"] = orjson.dumps(reply)
    v = (await conn.execute(_SEND, params)).scalar()
    return None if v is None else int(v)


def mark_deleted(message_id: str, by: str, at_ms: int) -> Any:
    return (
        update(_messages)
        .where(_messages.c.id == message_id)
        .values(deleted_at_ms=at_ms, deleted_by=by)
    )


async def page(
    conn: AsyncConnection, room: str, *, upto_v: int, before_v: int | None, limit: int
) -> list[Any]:
    """Up to `limit` visible messages with v <= upto_v (and < before_v), newest first."""
    stmt = select(_messages).where(
        _messages.c.room == room, _messages.c.v <= upto_v, _messages.c.deleted_at_ms.is_(None)
    )
    if before_v is not None:
        stmt = stmt.where(_messages.c.v < before_v)
    return list(await conn.execute(stmt.order_by(_messages.c.v.desc()).limit(limit)))


async def chat_version(conn: AsyncConnection, room: str) -> int:
    v = (await conn.execute(select(_rooms.c.chat_v).where(_rooms.c.room == room))).scalar()
    return 0 if v is None else int(v)


def chat_version_statement(conn: AsyncConnection, room: str, v: int) -> Any:
    """The room's chat version is now `v` (its first message creates the row): an upsert,
    so it batches with the message's own writes (services/common/writes.py)."""
    insert = sqlite_insert if conn.dialect.name == "sqlite" else pg_insert
    stmt = insert(_rooms).values(room=room, chat_v=v)
    return stmt.on_conflict_do_update(index_elements=[_rooms.c.room], set_={"chat_v": v})


# -- upkeep (the janitor asks) ------------------------------------------------------------


async def purge_messages(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    """Messages sent before `before_ms` (CHAT_RETENTION_DAYS), deleted ones included."""
    oldest = (
        select(_messages.c.id)
        .where(_messages.c.at_ms < before_ms)
        .order_by(_messages.c.at_ms)
        .limit(limit)
    )
    result = await conn.execute(delete(_messages).where(_messages.c.id.in_(oldest)))
    return result.rowcount or 0


async def purge_orphans(conn: AsyncConnection, limit: int) -> int:
    """Messages and chat state of rooms that rooms closed (no room sequence any more)."""
    orphans = select(_messages.c.id).where(sequencer.orphan_rooms(_messages.c.room)).limit(limit)
    deleted = (await conn.execute(delete(_messages).where(_messages.c.id.in_(orphans)))).rowcount
    rooms = select(_rooms.c.room).where(sequencer.orphan_rooms(_rooms.c.room)).limit(limit)
    deleted += (await conn.execute(delete(_rooms).where(_rooms.c.room.in_(rooms)))).rowcount
    return deleted or 0
