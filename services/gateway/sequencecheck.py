"""After a room command ended without a clear answer, make sure none of its events was lost.

A service commits a command's change, then publishes its events. If it dies in between, or
its publish fails and the command answers `internal`, the events are gone, and nobody sees
the gap until a later event of the room arrives: maybe never (a paused room), while the
command's retry is answered `ok` from the service's request log. So when a command of a room
ends in `timeout` or `internal`, the gateway waits for events in flight (`DELAY_S`), then
asks rooms (`st.rooms.cmd.sequence_check`) with the last version it delivered for the room.
If the room's version is past it, rooms publishes a `resync` event after it, and every
gateway and member of the room reads a snapshot. One check per room at a time.
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
    def __init__(self, ask: Ask, hub: Hub, delay_s: float = DELAY_S) -> None:
        self.ask = ask
        self.hub = hub
        self.delay_s = delay_s
        self._due: dict[str, asyncio.Task[None]] = {}  # by room; the loop holds tasks weakly

    def after_error(self, room: str | None, code: str) -> None:
        """A command of `room` ended with error `code`: check the room if that is unclear."""
        if room is None or code not in UNCLEAR or room in self._due:
            return
        if room not in self.hub.channels:
            return  # no member of the room here: nothing of it to miss
        self._due[room] = asyncio.get_running_loop().create_task(self._check(room))

    def after_reply(self, room: str | None, raw: bytes) -> None:
        """The same for a service's reply as relayed (only error replies are read)."""
        if room is not None and raw.startswith(_ERROR_REPLY):
            code = (orjson.loads(raw).get("error") or {}).get("code")
            self.after_error(room, str(code))

    async def _check(self, room: str) -> None:
        try:
            await asyncio.sleep(self.delay_s)
            channel = self.hub.channels.get(room)
            if channel is None or channel.next_v is None:
                return  # gone from here, or a snapshot starts its sequence now
            reply = await self.ask(SequenceCheck(room=room, seen_v=max(0, channel.next_v - 1)))
            CHECKS.labels("resynced" if reply["resynced"] else "in_order").inc()
        except ServiceError as exc:
            CHECKS.labels("failed").inc()
            log.warning("sequence check of %s: %s", room, exc.code)
        finally:
            self._due.pop(room, None)

    async def aclose(self) -> None:
        tasks = list(self._due.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._due.clear()  # a task cancelled before it ran never reached its `finally`
