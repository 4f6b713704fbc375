"""After a room command ended without a clear answer, make sure none of its events was lost.

A service commits a command's change, then publishes its events. If it dies in between, or
its publish fails and the command answers `internal`, the events are gone, and nobody sees
the gap until a later event of the room arrives: maybe never (a paused room), while the
command's retry is answered `ok` from the service's request log. So when a command of a room
ends in `timeout` or `internal`, the gateway waits for events in flight (`DELAY_S`), then
asks rooms (`st.rooms.cmd.sequence_check`) for the room's version. Under load the command
may only have been slow: its events come once it commits. So only if the events up to that
version have not arrived `ARRIVAL_S` later does the gateway ask again, with `resync` and the
last version it delivered; rooms then publishes a `resync` event after the room's version,
and every gateway and member of the room reads a snapshot. One check per room at a time.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from prometheus_client import Counter

from services.common import bus
from services.common.contracts import subjects
from services.common.contracts.envelope import SequenceCheck
from services.common.contracts.errors import ErrorCode, ServiceError

from .hub import Hub

log = logging.getLogger(__name__)

DELAY_S = 1.0  # events in flight arrive within milliseconds; a gap waits reorder_wait_s
ARRIVAL_S = 1.0  # after rooms named the room's version, for the events up to it
POLL_S = 0.05
TIMEOUT_S = 3.0
# What may have committed without its events reaching anyone. Not `unavailable`: no
# replica took the request, or the bus was away, after which every room resyncs anyway.
UNCLEAR = frozenset({ErrorCode.TIMEOUT, ErrorCode.INTERNAL})
_ERROR_REPLY = b'{"ok":false'

CHECKS = Counter(
    "sharetube_gateway_sequence_checks_total",
    "Room sequences checked after a command ended in timeout or internal, by outcome",
    ["outcome"],  # in_order, resynced (events had been lost), failed
)


Ask = Callable[[SequenceCheck], Awaitable[Any]]


def asking_rooms(nc: NATS) -> Ask:
    """`st.rooms.cmd.sequence_check` over the bus: the reply's data, or its ServiceError."""

    async def ask(check: SequenceCheck) -> Any:
        return await bus.request(
            nc,
            subjects.command("rooms", "sequence_check"),
            bus.internal_envelope(check, room=check.room),
            timeout_s=TIMEOUT_S,
        )

    return ask


class SequenceChecks:
    def __init__(
        self, ask: Ask, hub: Hub, delay_s: float = DELAY_S, arrival_s: float = ARRIVAL_S
    ) -> None:
        self.ask = ask
        self.hub = hub
        self.delay_s = delay_s
        self.arrival_s = arrival_s
        self._due: dict[str, asyncio.Task[None]] = {}  # by room; the loop holds tasks weakly

    def after_error(self, room: str | None, code: str) -> None:
        """A command of `room` ended with error `code`: check the room if that is unclear."""
        if room is not None and code in UNCLEAR:
            self.check(room)

    def check(self, room: str) -> None:
        """Make sure this gateway's members of `room` have every event it committed (unless
        a check of it is under way, or no member of it is here)."""
        if room in self._due or room not in self.hub.channels:
            return
        self._due[room] = asyncio.get_running_loop().create_task(self._check(room))

    def checking(self, room: str) -> bool:
        return room in self._due

    def after_reply(self, room: str | None, raw: bytes) -> None:
        """The same for a service's reply as relayed (only error replies are read)."""
        if room is not None and raw.startswith(_ERROR_REPLY):
            code = (orjson.loads(raw).get("error") or {}).get("code")
            self.after_error(room, str(code))

    async def _check(self, room: str) -> None:
        try:
            await asyncio.sleep(self.delay_s)
            delivered = self.delivered(room)
            if delivered is None:
                return  # gone from here, or a snapshot starts its sequence now
            # First the room's version: the command that timed out may still have been
            # queued, and publish once it commits; only events that do not arrive within
            # `arrival_s` of that answer were lost.
            reply = await self.ask(SequenceCheck(room=room, seen_v=delivered))
            committed = int(reply["v"])
            deadline = asyncio.get_running_loop().time() + self.arrival_s
            while (delivered := self.delivered(room)) is not None and delivered < committed:
                if asyncio.get_running_loop().time() >= deadline:
                    break
                await asyncio.sleep(POLL_S)
            if delivered is None or delivered >= committed:
                CHECKS.labels("in_order").inc()
                return
            reply = await self.ask(SequenceCheck(room=room, seen_v=delivered, resync=True))
            CHECKS.labels("resynced" if reply["resynced"] else "in_order").inc()
        except ServiceError as exc:
            CHECKS.labels("failed").inc()
            log.warning("sequence check of %s: %s", room, exc.code)
        finally:
            self._due.pop(room, None)

    def delivered(self, room: str) -> int | None:
        """The last version of the room this gateway delivered, if its sequence runs."""
        channel = self.hub.channels.get(room)
        if channel is None or channel.next_v is None:
            return None
        return max(0, channel.next_v - 1)

    async def aclose(self) -> None:
        tasks = list(self._due.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._due.clear()  # a task cancelled before it ran never reached its `finally`
