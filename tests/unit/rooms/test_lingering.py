"""services/rooms/joins.py `Lingering`: a join waits for the joins right behind it only in a
room this replica last saw with `from_members` members or more, and the rooms remembered stay
bounded."""

import pytest

from services.rooms import joins


def test_only_a_room_last_seen_big_lingers() -> None:
    lingering = joins.Lingering(from_members=200, linger_s=0.05)
    assert lingering.wait_s("unseen") == 0.0
    lingering.saw("big", 200)
    lingering.saw("small", 199)
    assert lingering.wait_s("big") == 0.05
    assert lingering.wait_s("small") == 0.0
    lingering.saw("big", 150)  # most of them left
    assert lingering.wait_s("big") == 0.0


def test_the_rooms_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(joins, "ROOMS_REMEMBERED", 3)
    lingering = joins.Lingering(from_members=1, linger_s=0.05)
    for code in ["a", "b", "c"]:
        lingering.saw(code, 10)
    lingering.saw("a", 10)  # seen again: now the most recent
    lingering.saw("d", 10)  # over the bound: the least recently seen ("b") goes
    assert [c for c in "abcd" if lingering.wait_s(c)] == ["a", "c", "d"]
