"""The control committer's copies of rooms (services/rooms/known.py): a room's copy is shared
by its controllers, each with their own membership; copies are bounded; a room whose copy was
stale is not copied again for a while."""

from collections import namedtuple

import pytest

from services.rooms import known
from services.rooms.known import KnownRooms

Row = namedtuple(
    "Row", "code seq_v position_ms s_xmin r_xmin m_xmin m_name m_role m_joined_at_ms m_banned"
)


def read_row(code: str, name: str | None, v: int = 1) -> Row:
    role = None if name is None else "member"
    return Row(code, v, 0, "10", "11", None if name is None else "12", name, role, 5, False)


def test_a_rooms_copy_is_shared_with_each_callers_membership() -> None:
    rooms = KnownRooms()
    rooms.read(read_row("r1", "ann"), "u-ann")
    rooms.read(read_row("r1", None, v=2), "u-bob")  # bob is no member; the room moved on
    ann, bob = rooms.row("r1", "u-ann"), rooms.row("r1", "u-bob")
    assert ann.m_name == "ann" and ann.m_xmin == "12" and ann.seq_v == 2
    assert bob.m_role is None and bob.m_xmin is None and bob.seq_v == 2
    assert rooms.row("r1", "u-carol") is None  # her membership was never read
    assert rooms.row("r2", "u-ann") is None


def test_a_write_updates_the_copy() -> None:
    rooms = KnownRooms()
    rooms.read(read_row("r1", "ann"), "u-ann")
    rooms.wrote("r1", seq_v=7, position_ms=3000, s_xmin="20")
    row = rooms.row("r1", "u-ann")
    assert (row.seq_v, row.position_ms, row.s_xmin, row.r_xmin) == (7, 3000, "20", "11")
    rooms.wrote("r2", seq_v=1)  # not known: nothing to update
    assert rooms.row("r2", "u-ann") is None


def test_copies_are_bounded_oldest_first() -> None:
    rooms = KnownRooms(max_rooms=3, max_members=3)
    for i in range(5):
        rooms.read(read_row(f"r{i}", "ann"), "u-ann")
    assert len(rooms) == 3
    assert [rooms.row(f"r{i}", "u-ann") is not None for i in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_a_stale_rooms_copy_is_shunned_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(known.time, "monotonic", lambda: now[0])
    rooms = KnownRooms()
    rooms.read(read_row("r1", "ann"), "u-ann")
    rooms.forget("r1")  # refused by the copy: dropped, not shunned
    rooms.read(read_row("r1", "ann"), "u-ann")
    assert rooms.row("r1", "u-ann") is not None
    rooms.forget("r1", shun=True)
    rooms.read(read_row("r1", "ann"), "u-ann")
    assert rooms.row("r1", "u-ann") is None
    now[0] += known.SHUN_S
    rooms.read(read_row("r1", "ann"), "u-ann")
    assert rooms.row("r1", "u-ann") is not None
