"""All of the chat service's SQL."""

from typing import Any

from sqlalchemy import delete, select, update
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


async def insert_message(conn: AsyncConnection, message: ChatMessage, room: str, v: int) -> None:
    await conn.execute(_messages.insert().values(room=room, v=v, **message.model_dump()))


async def get_message(conn: AsyncConnection, room: str, message_id: str) -> Any | None:
    stmt = select(_messages).where(_messages.c.room == room, _messages.c.id == message_id)
    return (await conn.execute(stmt)).first()


async def mark_deleted(conn: AsyncConnection, message_id: str, by: str, at_ms: int) -> None:
    await conn.execute(
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


async def set_chat_version(conn: AsyncConnection, room: str, v: int) -> None:
    """Under the room's lock (sequencer.bump), so the insert below never races."""
    result = await conn.execute(update(_rooms).where(_rooms.c.room == room).values(chat_v=v))
    if result.rowcount == 0:
        await conn.execute(_rooms.insert().values(room=room, chat_v=v))


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
