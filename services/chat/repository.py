"""All of the chat service's SQL."""

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import BigInteger, LargeBinary, String, bindparam, delete, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common import sequencer
from services.common.contracts.models import ChatMessage

from .models import ChatMessageRow, ChatRoom

_messages = ChatMessageRow.__table__
_rooms = ChatRoom.__table__


def message_of(row: Any) -> dict[str, Any]:
    """A stored message's wire form, the fields of contracts.models.ChatMessage, without
    building the model (a history page has 50 of them, each checked when it was sent)."""
    return {
        "id": row.id,
        "user_id": row.user_id,
        "name": row.name,
        "text": row.text,
        "at_ms": row.at_ms,
    }


def insert_message(message: ChatMessage, room: str, v: int) -> Any:
    return _messages.insert().values(room=room, v=v, **message.model_dump())


async def get_message(conn: AsyncConnection, room: str, message_id: str) -> Any | None:
    stmt = select(_messages).where(_messages.c.room == room, _messages.c.id == message_id)
    return (await conn.execute(stmt)).first()


# Messages in one statement, each in its own room (chat's room lock and sends.py keep one
# per room): each room's next version (its row lock, held to the end of the statement,
# serialises it with every other change of the room), the message at that version, the chat
# version, and the reply under the request id. Autocommitted, it is as atomic as a
# transaction: a request id already remembered fails it whole.
# The rooms' sequence rows are locked in room order first (as every group of rooms and chat
# does), so two groups cannot deadlock; after a wait, `v + 1` is taken from the row as its
# last holder left it.
_SEND = text(
    """
WITH input AS (
  SELECT * FROM unnest(:rooms, :ids, :user_ids, :names, :texts, :at_ms, :request_ids, :replies)
         AS i(room, id, user_id, name, text, at_ms, request_id, reply)
), locked AS (
  SELECT q.room FROM room_seq q WHERE q.room = ANY(:rooms) ORDER BY q.room FOR UPDATE
), seq AS (
  UPDATE room_seq q SET v = q.v + 1
  FROM input i WHERE q.room = i.room AND q.room IN (SELECT room FROM locked)
  RETURNING q.room, q.v
), message AS (
  INSERT INTO chat_messages (id, room, v, user_id, name, text, at_ms)
  SELECT i.id, i.room, seq.v, i.user_id, i.name, i.text, i.at_ms FROM input i JOIN seq USING (room)
), version AS (
  INSERT INTO chat_rooms (room, chat_v) SELECT seq.room, seq.v FROM seq
  ON CONFLICT (room) DO UPDATE SET chat_v = excluded.chat_v
), remembered AS (
  INSERT INTO chat_commands (user_id, request_id, command, reply, at_ms)
  SELECT i.user_id, i.request_id, 'send', i.reply, i.at_ms FROM input i JOIN seq USING (room)
)
SELECT room, v FROM seq
"""
).bindparams(
    bindparam("rooms", type_=ARRAY(String)),
    bindparam("ids", type_=ARRAY(String)),
    bindparam("user_ids", type_=ARRAY(String)),
    bindparam("names", type_=ARRAY(String)),
    bindparam("texts", type_=ARRAY(String)),
    bindparam("at_ms", type_=ARRAY(BigInteger)),
    bindparam("request_ids", type_=ARRAY(String)),
    bindparam("replies", type_=ARRAY(LargeBinary)),
)


async def send_messages(
    conn: AsyncConnection, sends: list[tuple[str, ChatMessage, str, Any]]
) -> dict[str, int]:
    """Store each (room, message, request id, reply) at its room's next version
    (PostgreSQL); the version by room, without the rooms that do not exist. A remembered
    request id raises IntegrityError."""
    params: dict[str, list[Any]] = {
        "rooms": [room for room, _, _, _ in sends],
        "ids": [m.id for _, m, _, _ in sends],
        "user_ids": [m.user_id for _, m, _, _ in sends],
        "names": [m.name for _, m, _, _ in sends],
        "texts": [m.text for _, m, _, _ in sends],
        "at_ms": [m.at_ms for _, m, _, _ in sends],
        "request_ids": [rid for _, _, rid, _ in sends],
        "replies": [orjson.dumps(reply) for _, _, _, reply in sends],
    }
    rows = (await conn.execute(_SEND, params)).all()
    return {row.room: int(row.v) for row in rows}


# History pages for a batch of reads (services/common/batchedreads.py), one statement, so
# one snapshot: each room's version, its chat version, whether its `before_id` anchor exists,
# and up to `lim` visible messages (before the anchor's), newest first, one row each (or
# one row of NULL message columns). `seq` is NULL for a room that does not exist. The page
# is a backward range scan of ix_chat_messages_room_v from the anchor's version (or the
# top): a page far back in a long chat reads no newer message. The anchor is found by its
# id alone (the primary key; by room, the plan would walk the room's messages), and one of
# another room counts as not found: an error to the caller, whatever rows come with it.
PAGES_SQL = """
SELECT c.i, s.v AS seq, r.chat_v, a.v AS anchor_v,
       m.id, m.user_id, m.name, m.text, m.at_ms
FROM unnest(%(rooms)s::text[], %(before_ids)s::text[], %(limits)s::int[])
     WITH ORDINALITY AS c(room, before_id, lim, i)
LEFT JOIN room_seq s ON s.room = c.room
LEFT JOIN chat_rooms r ON r.room = c.room
LEFT JOIN LATERAL (
  SELECT CASE WHEN x.room = c.room THEN x.v END AS v FROM chat_messages x WHERE x.id = c.before_id
) a ON true
LEFT JOIN LATERAL (
  SELECT m.id, m.user_id, m.name, m.text, m.at_ms, m.v FROM chat_messages m
  WHERE m.room = c.room AND m.v < coalesce(a.v, 9223372036854775807) AND m.deleted_at_ms IS NULL
  ORDER BY m.v DESC LIMIT c.lim
) m ON true
ORDER BY c.i, m.v DESC
"""


def page_parameters(reads: Sequence[tuple[str, str | None, int]]) -> dict[str, Any]:
    """`PAGES_SQL`'s arrays for (room, before_id, limit) reads."""
    return {
        "rooms": [room for room, _, _ in reads],
        "before_ids": [before_id for _, before_id, _ in reads],
        "limits": [limit for _, _, limit in reads],
    }


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
