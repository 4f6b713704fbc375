"""queue: queue.add, queue.move and queue.remove straight to the queue service over the bus.

Each room keeps a few entries: below three an operation adds; otherwise it moves the newest
entry to the head, removes the oldest, or adds, in turn. One operation per room at a time
(a move names an entry the previous remove may have taken); a room's next operation waits
for the previous one, and that wait counts in its latency. Every change is a `queue` event
whose version the room's stream checks.

With `--reads`, each operation is the queue's part of a join's snapshot (`queue.load`) by a
member, round-robin, over rooms of KEEP entries each.
"""

import asyncio
from typing import Any

from ..busclient import envelope
from .base import VIDEO_ID, Defaults
from .busdriver import BusDriver

KEEP = 3
CYCLE = ("move", "remove", "add")


class QueueDriver(BusDriver):
    service = "queue"
    defaults = Defaults(rooms=50, members=4, rate=100.0)

    def scenario(self) -> str:
        if self.options.reads:
            return f"{super().scenario()}; queue.load round-robin, {KEEP} entries a room"
        return f"{super().scenario()}; add, move and remove, about {KEEP} entries a room"

    async def prepare(self) -> None:
        assert self.population is not None
        if self.options.reads:
            for room in self.population.rooms:
                for i in range(KEEP):
                    data = {"video_id": VIDEO_ID, "title": f"load {i}"}
                    await self.population.expect("queue.add", room.owner, room.code, data)
        count = len(self.population.rooms)
        self.entries: list[list[str]] = [[] for _ in range(count)]
        self.turns = [0] * count
        self.locks = [asyncio.Lock() for _ in range(count)]

    async def operation(self, index: int, due: float) -> None:
        assert self.population is not None and self.bus is not None
        if self.options.reads:
            await self._load(index, due)
            return
        i = index % len(self.population.rooms)
        room, entries = self.population.rooms[i], self.entries[i]
        async with self.locks[i]:
            turn = self.turns[i]
            self.turns[i] += 1
            kind = "add" if len(entries) < KEEP else CYCLE[turn % len(CYCLE)]
            data: dict[str, Any]
            if kind == "add":
                data = {"video_id": VIDEO_ID, "title": f"load {index}"}
            elif kind == "move":
                data = {"entry_id": entries[-1], "index": 0}
            else:
                data = {"entry_id": entries[0]}
            actor = room.members[turn % len(room.members)]
            command = f"queue.{kind}"
            reply = await self.bus.request(command, envelope(actor, room.code, data), due)
            self.count(command, reply)
            if not reply.ok:
                return
            if kind == "add":
                entries.append(reply.data["entry"]["id"])
            elif kind == "move":
                entries.insert(0, entries.pop())
            else:
                entries.pop(0)

    async def _load(self, index: int, due: float) -> None:
        assert self.population is not None and self.bus is not None
        room, actor = self.population.member_at(index)
        reply = await self.bus.request("queue.load", envelope(actor, room.code, {}), due)
        if reply.ok and len(reply.data["queue"]) != KEEP:
            self.tallies["queue.load"].failed("wrong_entries")  # a read that lost some
        else:
            self.count("queue.load", reply)
