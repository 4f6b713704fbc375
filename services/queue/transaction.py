"""One command's change to one room's queue, made in memory under the room's lock."""

from sqlalchemy.ext.asyncio import AsyncConnection

from services.common import sequencer
from services.common.contracts import events
from services.common.jsonutil import now_ms
from services.common.writes import WriteBatch

from . import repository as repo


class QueueTx:
    """One command's view of one room's queue under the room lock.

    The queue is read once (one statement); the command changes it here, in memory, and its
    writes wait in a batch that commit sends as one statement. The `queue` event is built
    from the queue as changed, not read again.
    """

    def __init__(self, conn: AsyncConnection, room: str, v: int, queue: repo.RoomQueue) -> None:
        self.conn = conn
        self.room = room
        self.v = v
        self.stored = queue.stored
        self.current_entry_id = queue.current_entry_id
        self.entries = queue.entries  # the queued entries, in order
        self.changed = False
        self.writes = WriteBatch()  # sent together at commit
        self._inserted: set[str] = set()
        self._renumber = False

    def find(self, entry_id: str) -> repo.Entry | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    def add(self, entry: repo.Entry, *, at_head: bool) -> None:
        if at_head:
            entry.pos = 0
            self.entries.insert(0, entry)
            self._renumber = True
        else:
            # After the last one: positions keep gaps where entries left, so the count of
            # entries could sort the new one before the last.
            entry.pos = self.entries[-1].pos + 1 if self.entries else 0
            self.entries.append(entry)
        self._inserted.add(entry.id)
        self.writes.add(repo.insert_statement(self.room, entry, now_ms()))
        self.changed = True

    def take(self, entry: repo.Entry, state: str) -> None:
        """Off the queue: `removed`, `current` or `done`."""
        self.entries.remove(entry)
        self.writes.add(repo.state_statement(entry.id, state))
        self.changed = True

    def finish(self, entry_id: str) -> None:
        """The entry that was playing has been played."""
        self.writes.add(repo.state_statement(entry_id, "done"))
        self.changed = True

    def reorder(self, ids: list[str]) -> None:
        by_id = {e.id: e for e in self.entries}
        self.entries = [by_id[i] for i in ids]
        self._renumber = True
        self.changed = True

    def prepare_commit(self) -> bytes | None:
        """Add the queue's new version to the batched writes; the `queue` event, or None
        when the command changed nothing (its writes, if any, still wait in the batch)."""
        if not self.changed:
            return None
        self.v += 1
        if self._renumber:
            positions = {}
            for pos, entry in enumerate(self.entries):
                entry.pos = pos
                if entry.id not in self._inserted:  # inserted at their position
                    positions[entry.id] = pos
            if positions:
                self.writes.add(repo.positions_statement(positions))
        self.writes.add(
            repo.room_statement(
                self.room,
                stored=self.stored,
                current_entry_id=self.current_entry_id,
                queue_v=self.v,
            )
        )
        self.writes.add(sequencer.advance_statement(self.room, self.v))
        data = [e.contract() for e in self.entries]
        return events.encode("queue", self.room, self.v, data)

    async def commit(self) -> bytes | None:
        """Write the queue's new version with the batched writes; the `queue` event."""
        event = self.prepare_commit()
        await self.writes.flush(self.conn)
        return event
