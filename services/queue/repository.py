"""All of the queue service's SQL."""

from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common import sequencer
from services.common.contracts.models import QueueEntry

from .models import QueueEntryRow, QueueRoom

_entries = QueueEntryRow.__table__
_rooms = QueueRoom.__table__


def to_contract(row: Any) -> QueueEntry:
    return QueueEntry(
        id=row.id,
        video_id=row.video_id,
        title=row.title,
        duration_ms=row.duration_ms,
        thumbnail=row.thumbnail,
        added_by=row.added_by,
        added_by_name=row.added_by_name,
    )


async def queued(conn: AsyncConnection, room: str) -> list[Any]:
    rows = await conn.execute(
        select(_entries)
        .where(_entries.c.room == room, _entries.c.state == "queued")
        .order_by(_entries.c.pos, _entries.c.created_at_ms)
    )
    return list(rows)


async def count_queued(conn: AsyncConnection, room: str) -> int:
    stmt = select(func.count()).where(_entries.c.room == room, _entries.c.state == "queued")
    return int((await conn.execute(stmt)).scalar_one())


async def count_queued_in(conn: AsyncConnection, rooms: list[str]) -> dict[str, int]:
    """`count_queued` for many rooms in one query; rooms with nothing queued are absent."""
    if not rooms:
        return {}
    stmt = (
        select(_entries.c.room, func.count())
        .where(_entries.c.room.in_(rooms), _entries.c.state == "queued")
        .group_by(_entries.c.room)
    )
    return {room: int(n) for room, n in await conn.execute(stmt)}


async def get_entry(conn: AsyncConnection, room: str, entry_id: str) -> Any | None:
    stmt = select(_entries).where(_entries.c.room == room, _entries.c.id == entry_id)
    return (await conn.execute(stmt)).first()


async def insert_entry(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(_entries.insert().values(**values))


async def set_state(conn: AsyncConnection, entry_id: str, state: str) -> None:
    await conn.execute(update(_entries).where(_entries.c.id == entry_id).values(state=state))


async def renumber(conn: AsyncConnection, ordered_ids: list[str]) -> None:
    for pos, entry_id in enumerate(ordered_ids):
        await conn.execute(update(_entries).where(_entries.c.id == entry_id).values(pos=pos))


async def room_state(conn: AsyncConnection, room: str) -> Any | None:
    return (await conn.execute(select(_rooms).where(_rooms.c.room == room))).first()


async def ensure_room(conn: AsyncConnection, room: str) -> Any:
    row = await room_state(conn, room)
    if row is None:
        await conn.execute(_rooms.insert().values(room=room, current_entry_id=None, queue_v=0))
        row = await room_state(conn, room)
    return row


def room_update(room: str, *, current_entry_id: str | None, queue_v: int) -> Any:
    return (
        update(_rooms)
        .where(_rooms.c.room == room)
        .values(current_entry_id=current_entry_id, queue_v=queue_v)
    )


# -- upkeep (the janitor asks) ------------------------------------------------------------


async def purge_finished(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    """Played and removed entries added before `before_ms`; queued and current ones stay."""
    oldest = (
        select(_entries.c.id)
        .where(_entries.c.state.in_(("done", "removed")), _entries.c.created_at_ms < before_ms)
        .order_by(_entries.c.created_at_ms)
        .limit(limit)
    )
    result = await conn.execute(delete(_entries).where(_entries.c.id.in_(oldest)))
    return result.rowcount or 0


async def purge_orphans(conn: AsyncConnection, limit: int) -> int:
    """Entries and queue state of rooms that rooms closed (no room sequence any more)."""
    orphans = select(_entries.c.id).where(sequencer.orphan_rooms(_entries.c.room)).limit(limit)
    deleted = (await conn.execute(delete(_entries).where(_entries.c.id.in_(orphans)))).rowcount
    rooms = select(_rooms.c.room).where(sequencer.orphan_rooms(_rooms.c.room)).limit(limit)
    deleted += (await conn.execute(delete(_rooms).where(_rooms.c.room.in_(rooms)))).rowcount
    return deleted or 0
