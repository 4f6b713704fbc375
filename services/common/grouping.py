"""Group commit's scheduling, shared by rooms' playback controls, chat's messages and the
queue's commands: what arrives while a group is in the database waits, and goes together in
the next group, with at most one command of a room so that a room's commands keep their
order."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class OneGroupAtATime(Generic[T]):
    """Runs `run` over groups of what `add` was given, one group at a time."""

    def __init__(
        self, run: Callable[[list[T]], Awaitable[None]], room_of: Callable[[T], str], limit: int
    ) -> None:
        self._run = run
        self._room_of = room_of
        self._limit = limit
        self._waiting: list[T] = []
        self._running: asyncio.Task[None] | None = None

    def add(self, item: T) -> None:
        self._waiting.append(item)
        self._start()

    async def aclose(self) -> None:
        """Cancel the group under way, if any."""
        if self._running is not None:
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)

    def _start(self) -> None:
        if self._waiting and self._running is None:
            group, self._waiting = one_per_room(self._waiting, self._room_of, self._limit)
            self._running = asyncio.get_running_loop().create_task(self._run(group))
            self._running.add_done_callback(self._finished)

    def _finished(self, _task: asyncio.Task[None]) -> None:
        self._running = None
        self._start()


def one_per_room(
    waiting: list[T], room_of: Callable[[T], str], limit: int
) -> tuple[list[T], list[T]]:
    """The next group (at most `limit`), and what waits on. The room's lock keeps a room's
    commands apart, but a caller that gave up (cancelled) releases it while its command still
    waits: a second command of that room waits for the next group, after it."""
    group: list[T] = []
    rest: list[T] = []
    rooms: set[str] = set()
    for item in waiting:
        room = room_of(item)
        if room in rooms or len(group) >= limit:
            rest.append(item)
        else:
            rooms.add(room)
            group.append(item)
    return group, rest
