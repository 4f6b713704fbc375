"""Commands of one room that wait for its lock, in lines of one kind: the next holder of the
lock applies its whole line in one transaction (the combining lock of a group commit: no
timer, no added wait; only joins into a big room wait a little first, joins.Lingering).

A burst of one kind of command in one room (a join storm; every player's `ready` after a
seek) costs each command, alone, a transaction of its own, one after the other under the
room's lock. A line is a run of commands of one kind that arrived one after the other: a
command of another kind, or any command that is not lined up (`barrier`), ends it, so no
command is applied before one that arrived earlier (a socket's `leave` then its `join`, a
`seek` then a late `ready`, stay in order).
"""

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from prometheus_client import Histogram

T = TypeVar("T")

LINE_SIZE = Histogram(
    "sharetube_rooms_line_size",
    "Commands of one room applied together in one transaction, by kind (join, report)",
    ["kind"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)


@dataclass(slots=True, eq=False)
class _Line(Generic[T]):
    kind: str
    items: list[T] = field(default_factory=list)
    open: bool = True  # later commands of its kind still join it


class WaitingLines(Generic[T]):
    """By room, in arrival order. Items are found by identity (give them `eq=False`)."""

    def __init__(self) -> None:
        self._rooms: dict[str, list[_Line[T]]] = {}

    def add(self, code: str, kind: str, item: T) -> None:
        lines = self._rooms.setdefault(code, [])
        if not lines or not lines[-1].open or lines[-1].kind != kind:
            if lines:
                lines[-1].open = False  # for good, even once the lines after it are gone
            lines.append(_Line(kind))
        lines[-1].items.append(item)

    def waiting(self, code: str) -> int:
        """How many commands of the room wait in its lines."""
        return sum(len(line.items) for line in self._rooms.get(code, []))

    def barrier(self, code: str) -> None:
        """A command of the room that is not lined up arrived: later ones form a new line."""
        lines = self._rooms.get(code)
        if lines:
            lines[-1].open = False

    def take(self, code: str, item: T, limit: int) -> list[T]:
        """The commands to apply with `item` (the holder of the room's lock): its line, oldest
        first, at most `limit`; nothing when an earlier holder took it along."""
        lines = self._rooms.get(code, [])
        for i, line in enumerate(lines):
            if _holds(line.items, item):
                taken, line.items = line.items[:limit], line.items[limit:]
                if not _holds(taken, item):  # the lock is FIFO, so it heads its line; if
                    taken.append(item)  # not, it goes now all the same
                    _remove(line.items, item)
                self._tidy(code, i)
                LINE_SIZE.labels(line.kind).observe(len(taken))
                return taken
        return []

    def drop(self, code: str, item: T) -> None:
        """A command whose caller gave up before it was taken is not applied."""
        for i, line in enumerate(self._rooms.get(code, [])):
            if _holds(line.items, item):
                _remove(line.items, item)
                self._tidy(code, i)
                return

    def _tidy(self, code: str, i: int) -> None:
        lines = self._rooms[code]
        if not lines[i].items:
            # Also the last line, open: the next command of its kind starts a new one.
            del lines[i]
        if not lines:
            del self._rooms[code]


def _holds(items: list[T], item: T) -> bool:
    return any(x is item for x in items)


def _remove(items: list[T], item: T) -> None:
    for i, x in enumerate(items):
        if x is item:
            del items[i]
            return
