"""The control committer's copy of each room as it last read or wrote it (controls.py).

A copy carries the row versions it was read at (PostgreSQL's `xmin` of the room's sequence
row, of its rooms row and of the caller's membership) and the live players, so the next
control can be applied to it and written by one statement that first checks them: a seek
skips the round trip that locks and reads. Nothing here is trusted without that check, so a
copy that another replica or another path has made stale only costs the ordinary read.
"""

import time
from typing import Any, NamedTuple

MAX_ROOMS = 10_000  # bounds the memory: past it the oldest copies go first
MAX_MEMBERS = 50_000
# A room whose copy was found stale is not copied again for this long: another replica or
# path writes it too (with 2 rooms replicas, every other control), and there a copy costs a
# round trip more than it saves.
SHUN_S = 60.0


class _Member(NamedTuple):
    """The `m_*` columns of a row read for one user (all None: not a member)."""

    m_xmin: str | None
    m_name: str | None
    m_role: str | None
    m_joined_at_ms: int | None
    m_banned: bool | None


class KnownRooms:
    """Rows as `rooms_read` returns them, the room's part by room and the membership part
    by (room, user), so one room's controllers share the room's copy."""

    def __init__(self, max_rooms: int = MAX_ROOMS, max_members: int = MAX_MEMBERS) -> None:
        self._max_rooms = max_rooms
        self._max_members = max_members
        self._rooms: dict[str, Any] = {}
        self._members: dict[tuple[str, str], _Member] = {}
        self._shunned: dict[str, float] = {}  # room -> monotonic time its shunning ends

    def row(self, room: str, user_id: str) -> Any | None:
        """The room as last seen with `user_id`'s membership, or None when either is not
        known."""
        row = self._rooms.get(room)
        member = self._members.get((room, user_id))
        if row is None or member is None:
            return None
        return row._replace(**member._asdict())

    def read(self, row: Any, user_id: str) -> None:
        """Keep a row just read by `rooms_read` (its `code`, with `user_id`'s membership),
        unless its room is shunned."""
        until = self._shunned.get(row.code)
        if until is not None:
            if time.monotonic() < until:
                return
            del self._shunned[row.code]
        _put(self._rooms, row.code, row, self._max_rooms)
        member = _Member(row.m_xmin, row.m_name, row.m_role, row.m_joined_at_ms, row.m_banned)
        _put(self._members, (row.code, user_id), member, self._max_members)

    def wrote(self, room: str, **columns: Any) -> None:
        """A committed write changed these columns of `room` (with its new versions)."""
        row = self._rooms.get(room)
        if row is not None:
            self._rooms[room] = row._replace(**columns)

    def forget(self, room: str, shun: bool = False) -> None:
        """Drop the copy: the next control reads the room again. `shun` when it was stale,
        so that reads keep no copy of it for SHUN_S."""
        self._rooms.pop(room, None)
        if shun:
            _put(self._shunned, room, time.monotonic() + SHUN_S, self._max_rooms)

    def __len__(self) -> int:
        return len(self._rooms)


def _put(store: dict[Any, Any], key: Any, value: Any, limit: int) -> None:
    store.pop(key, None)  # re-inserted last: the oldest stays first in line to go
    store[key] = value
    while len(store) > limit:
        del store[next(iter(store))]
