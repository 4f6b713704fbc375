"""All of the queue service's SQL."""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import (
    String,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common import db, sequencer
from services.common.contracts.errors import ErrorCode, ServiceError

from .models import QueueEntryRow, QueueRoom

_entries = QueueEntryRow.__table__
_rooms = QueueRoom.__table__


@dataclass(slots=True)
class Entry:
    """A queued entry as the service keeps it while it holds the room's lock."""

    id: str
    video_id: str
    title: str | None
    duration_ms: int | None
    thumbnail: str | None
    added_by: str
    added_by_name: str
    pos: int  # its order among the queued entries (gaps are fine: only the order counts)

    def contract(self) -> dict[str, Any]:
        """The wire form (the fields of contracts.models.QueueEntry)."""
        return {
            "id": self.id,
            "video_id": self.video_id,
            "title": self.title,
            "duration_ms": self.duration_ms,
            "thumbnail": self.thumbnail,
            "added_by": self.added_by,
            "added_by_name": self.added_by_name,
        }


@dataclass(slots=True)
class RoomQueue:
    """One room's queue state and its queued entries, in order, as read in one statement."""

    stored: bool  # its queue_rooms row exists (written by the first change)
    current_entry_id: str | None
    queue_v: int
    entries: list[Entry]


_ENTRY_COLUMNS = (
    _entries.c.id,
    _entries.c.video_id,
    _entries.c.title,
    _entries.c.duration_ms,
    _entries.c.thumbnail,
    _entries.c.added_by,
    _entries.c.added_by_name,
    _entries.c.pos,
)

# The room's state and its queued entries in one statement (one row per entry, or one row of
# NULL entry columns for an empty queue). An entry is only written by a change, and a change
# always writes the room's row, so a room without one has no entries either.
_QUEUE_ROWS = select(_rooms.c.current_entry_id, _rooms.c.queue_v, *_ENTRY_COLUMNS).select_from(
    _rooms.outerjoin(
        _entries,
        and_(_entries.c.room == _rooms.c.room, _entries.c.state == literal_column("'queued'")),
    )
)
_READ_ROOM = _QUEUE_ROWS.where(_rooms.c.room == bindparam("room")).order_by(
    _entries.c.pos, _entries.c.created_at_ms
)


def _entry(row: Any) -> Entry:
    return Entry(
        row.id,
        row.video_id,
        row.title,
        row.duration_ms,
        row.thumbnail,
        row.added_by,
        row.added_by_name,
        row.pos,
    )


# The lock and the read as psycopg's SQL text, sent together (see `lock_and_read`); the
# read is `_READ_ROOM` compiled once, with `room` its only parameter.
_LOCK_SQL = "SELECT v FROM room_seq WHERE room = %(room)s FOR UPDATE"
_READ_ROOM_SQL = str(_READ_ROOM.compile(dialect=psycopg_dialect()))


async def lock_and_read(conn: AsyncConnection, room: str) -> tuple[int, RoomQueue]:
    """Take the room's lock, then read its queue as the lock's previous holder left it: the
    room's version and its queue. On PostgreSQL both statements (and the transaction's BEGIN)
    go in one round trip, in psycopg's pipeline mode; the read is a statement of its own, so
    its snapshot is taken once the lock is held."""
    if conn.dialect.name != "postgresql":
        v = await sequencer.lock(conn, room)
        return v, await read_room(conn, room)
    seqs, rows = await db.lock_then_read(conn, _LOCK_SQL, _READ_ROOM_SQL, {"room": room})
    if not seqs:
        raise ServiceError(ErrorCode.NOT_FOUND, "No such room.")
    return int(seqs[0][0]), _room_queue(rows)


# A group's rooms (services/queue/groups.py): locked in room order, so two replicas' groups
# cannot deadlock, then their queues read in a statement of their own, as `lock_and_read`
# does for one.
_LOCK_MANY_SQL = "SELECT v, room FROM room_seq WHERE room = ANY(%(rooms)s) ORDER BY room FOR UPDATE"
_READ_ROOMS_SQL = str(
    _QUEUE_ROWS.add_columns(_rooms.c.room)
    .where(_rooms.c.room == any_(bindparam("rooms", type_=ARRAY(String))))
    .order_by(_rooms.c.room, _entries.c.pos, _entries.c.created_at_ms)
    .compile(dialect=psycopg_dialect())
)


async def lock_and_read_many(
    conn: AsyncConnection, rooms: list[str]
) -> dict[str, tuple[int, RoomQueue]]:
    """`lock_and_read` for several rooms at once, in one round trip: each room's version
    and queue; a room that does not exist is absent."""
    versions, rows = await db.lock_then_read(
        conn, _LOCK_MANY_SQL, _READ_ROOMS_SQL, {"rooms": rooms}
    )
    by_room: dict[str, list[Any]] = {}
    for row in rows:
        by_room.setdefault(row.room, []).append(row)
    return {room: (int(v), _room_queue(by_room.get(room, []))) for v, room in versions}


# A snapshot's queue part for a batch of rooms (services/common/batchedreads.py): each
# room's version and its queue, read in one statement, so from one snapshot: the queue holds
# exactly the changes up to that version. One row per queued entry, or one row of NULL entry
# columns; `seq` NULL for a room that does not exist, `queue_v` NULL for a room whose queue
# never changed.
SNAPSHOTS_SQL = """
SELECT c.i, s.v AS seq, q.current_entry_id, q.queue_v,
       e.id, e.video_id, e.title, e.duration_ms, e.thumbnail, e.added_by, e.added_by_name, e.pos
FROM unnest(%(rooms)s::text[]) WITH ORDINALITY AS c(room, i)
LEFT JOIN room_seq s ON s.room = c.room
LEFT JOIN queue_rooms q ON q.room = c.room
LEFT JOIN queue_entries e ON e.room = q.room AND e.state = 'queued'
ORDER BY c.i, e.pos, e.created_at_ms
"""


def snapshot_parameters(rooms: Sequence[str]) -> dict[str, Any]:
    """`SNAPSHOTS_SQL`'s array for these rooms' reads."""
    return {"rooms": list(rooms)}


def snapshot_of(rows: list[Any]) -> tuple[int, RoomQueue]:
    """A room's `SNAPSHOTS_SQL` rows: its version (0 for no such room) and its queue."""
    first = rows[0]
    seq = 0 if first.seq is None else int(first.seq)
    if first.queue_v is None:
        return seq, RoomQueue(stored=False, current_entry_id=None, queue_v=0, entries=[])
    return seq, _room_queue(rows)


async def read_room(conn: AsyncConnection, room: str) -> RoomQueue:
    return _room_queue(list(await conn.execute(_READ_ROOM, {"room": room})))


def _room_queue(rows: list[Any]) -> RoomQueue:
    if not rows:
        return RoomQueue(stored=False, current_entry_id=None, queue_v=0, entries=[])
    first = rows[0]
    entries = [_entry(row) for row in rows if row.id is not None]
    return RoomQueue(True, first.current_entry_id, int(first.queue_v), entries)


async def count_queued_in(conn: AsyncConnection, rooms: list[str]) -> dict[str, int]:
    """Queued entries of many rooms in one query; rooms with nothing queued are absent."""
    if not rooms:
        return {}
    stmt = (
        select(_entries.c.room, func.count())
        .where(_entries.c.room.in_(rooms), _entries.c.state == "queued")
        .group_by(_entries.c.room)
    )
    return {room: int(n) for room, n in await conn.execute(stmt)}


async def get_entry(conn: AsyncConnection, room: str, entry_id: str) -> Entry | None:
    stmt = select(*_ENTRY_COLUMNS).where(_entries.c.room == room, _entries.c.id == entry_id)
    row = (await conn.execute(stmt)).first()
    return None if row is None else _entry(row)


# -- writes, for a command's WriteBatch (one statement on PostgreSQL) ----------------------
# A batch must not write one row twice (services/common/writes.py): an entry is inserted
# with its final position, and a renumbering leaves out the entries the command inserts.


def insert_statement(room: str, entry: Entry, created_at_ms: int) -> Any:
    return _entries.insert().values(
        room=room, state="queued", created_at_ms=created_at_ms, **asdict(entry)
    )


def state_statement(entry_id: str, state: str) -> Any:
    return update(_entries).where(_entries.c.id == entry_id).values(state=state)


def positions_statement(positions: dict[str, int]) -> Any:
    """Every listed entry's new position, in one statement."""
    return (
        update(_entries)
        .where(_entries.c.id.in_(list(positions)))
        .values(pos=case(positions, value=_entries.c.id))
    )


def room_statement(room: str, *, stored: bool, current_entry_id: str | None, queue_v: int) -> Any:
    if not stored:
        return _rooms.insert().values(room=room, current_entry_id=current_entry_id, queue_v=queue_v)
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
