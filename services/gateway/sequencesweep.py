"""Now and then, make sure no room's committed events stayed unpublished, whoever committed them.

The check after a command (sequencecheck.py) covers the commands this gateway relayed. A
process can also die between a commit and its publish when no gateway waits on it: rooms'
start deadline, the janitor's jobs, a service's own repair cut short by its end. So every
`interval_s` the gateway asks rooms for the committed version of every room it has members
of (`st.rooms.cmd.versions`, up to `MAX_SWEPT_ROOMS` a request, read without locks). A room
whose version is past what this gateway delivered, and still is `arrival_s` later (events in
flight arrive within milliseconds), gets the same two-step check as after a command, which
asks for a `resync` only if the events up to the room's version do not come.

A room left out of rooms' answer has been closed (its sequence is deleted with it). Rooms
sends its `evict` notice from an outbox until the bus has it (services/rooms/outbox.py), but
the bus keeps nothing for a gateway that was reconnecting at that moment, so the sweep does
what the notice would have done: every local socket leaves the room with an `evicted` frame
(`closed`). Evicting is idempotent: a notice that did arrive left nothing to do.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NATS
from prometheus_client import Counter

from services.common import bus
from services.common.contracts import subjects
from services.common.contracts.envelope import MAX_SWEPT_ROOMS, RoomVersions
from services.common.contracts.errors import ServiceError

from .sequencecheck import TIMEOUT_S, SequenceChecks

log = logging.getLogger(__name__)

INTERVAL_S = 10.0
ARRIVAL_S = 1.0  # as the check's own wait: in-flight events are milliseconds away

SWEPT_ROOMS = Counter(
    "sharetube_gateway_sequence_swept_rooms_total",
    "Rooms the periodic sweep compared with their committed version, by outcome",
    # in_step; behind (handed to a sequence check); closed (its sockets evicted);
    # unanswered (rooms did not answer)
    ["outcome"],
)

AskVersions = Callable[[RoomVersions], Awaitable[Any]]
EvictClosed = Callable[[str], Awaitable[int]]  # every local socket out of a closed room


def asking_rooms(nc: NATS) -> AskVersions:
    """`st.rooms.cmd.versions` over the bus: the reply's data, or its ServiceError."""

    async def ask(query: RoomVersions) -> Any:
        return await bus.request(
            nc, subjects.command("rooms", "versions"), query, timeout_s=TIMEOUT_S
        )

    return ask


class SequenceSweep:
    def __init__(
        self,
        ask: AskVersions,
        checks: SequenceChecks,
        evict_closed: EvictClosed,
        interval_s: float = INTERVAL_S,
        arrival_s: float = ARRIVAL_S,
    ) -> None:
        self.ask = ask
        self.checks = checks
        self.evict_closed = evict_closed
        self.interval_s = interval_s
        self.arrival_s = arrival_s

    async def run(self) -> None:
        """Sweep every `interval_s` until cancelled; a failed sweep waits for the next."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.sweep()
            except Exception:  # the next sweep tries again; the loop must not die
                log.exception("sequence sweep failed")

    async def sweep(self) -> list[str]:
        """One sweep: the rooms found behind and handed to a sequence check."""
        rooms = [
            room
            for room in list(self.checks.hub.channels)
            if self.checks.delivered(room) is not None and not self.checks.checking(room)
        ]
        committed: dict[str, int] = {}
        for start in range(0, len(rooms), MAX_SWEPT_ROOMS):
            chunk = rooms[start : start + MAX_SWEPT_ROOMS]
            try:
                reply = await self.ask(RoomVersions(rooms=chunk))
            except ServiceError as exc:
                SWEPT_ROOMS.labels("unanswered").inc(len(chunk))
                log.warning("sequence sweep of %d rooms: %s", len(chunk), exc.code)
                continue
            versions: dict[str, int] = reply["versions"]
            committed.update(versions)
            for room in chunk:
                if room not in versions and room in self.checks.hub.channels:
                    SWEPT_ROOMS.labels("closed").inc()
                    log.warning("room %s is closed: its sockets here leave it", room)
                    await self.evict_closed(room)
        behind = {room: v for room, v in committed.items() if self._behind(room, v)}
        if behind:
            await asyncio.sleep(self.arrival_s)
            behind = {room: v for room, v in behind.items() if self._behind(room, v)}
        for room in behind:
            self.checks.check(room)
        SWEPT_ROOMS.labels("behind").inc(len(behind))
        SWEPT_ROOMS.labels("in_step").inc(len(committed) - len(behind))
        return list(behind)

    def _behind(self, room: str, committed: int) -> bool:
        delivered = self.checks.delivered(room)
        return delivered is not None and delivered < committed
