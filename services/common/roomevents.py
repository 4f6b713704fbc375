"""Publish a committed change's room event, and repair the room when the bus refuses it.

A change is committed before its event is published. If the publish fails (the bus away for
longer than nats-py buffers, a payload it refuses), the event is lost but the change is not:
the command is answered as committed, and rooms is asked (`st.rooms.cmd.sequence_check` with
`resync`) to publish a `resync` event after the room's version, so every member reads a
snapshot. Rooms does the same for its own events without the bus hop (rooms/service.py).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.client import Client as NATS

from . import bus
from .contracts import subjects
from .contracts.envelope import SequenceCheck
from .contracts.errors import ErrorCode, ServiceError

log = logging.getLogger(__name__)

# Waits before each try: the bus is usually back within seconds (nats-py reconnects).
REPAIR_WAITS_S: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 15.0)
REQUEST_TIMEOUT_S = 3.0


async def keep_trying(
    attempt: Callable[[], Awaitable[Any]], waits_s: tuple[float, ...], what: str
) -> None:
    """`attempt` after each wait until it succeeds. `not_found` ends it too: the room was
    closed meanwhile, and its members evicted."""
    for wait_s in waits_s:
        await asyncio.sleep(wait_s)
        try:
            await attempt()
            return
        except ServiceError as exc:
            if exc.code == ErrorCode.NOT_FOUND:
                return
            log.warning("%s: %s", what, exc.code)
        except Exception as exc:
            log.warning("%s: %r", what, exc)
    log.error("%s: given up after %d tries", what, len(waits_s))


class RoomEvents:
    def __init__(self, nc: NATS, repair_waits_s: tuple[float, ...] = REPAIR_WAITS_S) -> None:
        self.nc = nc
        self.repair_waits_s = repair_waits_s
        self._repairs: set[asyncio.Task[None]] = set()  # the loop holds tasks weakly

    async def publish(self, room: str, subject: str, event: bytes) -> None:
        """Publish `event` (events.encode's bytes, so its `v` is read only on failure)."""
        try:
            await bus.publish(self.nc, subject, event)
        except Exception:
            log.exception("%s not published", subject)
            task = asyncio.ensure_future(self._repair(room, int(orjson.loads(event)["v"]) - 1))
            self._repairs.add(task)
            task.add_done_callback(self._repairs.discard)

    async def _repair(self, room: str, seen_v: int) -> None:
        check = SequenceCheck(room=room, seen_v=seen_v, resync=True)
        await keep_trying(
            lambda: bus.request(
                self.nc,
                subjects.command("rooms", "sequence_check"),
                bus.internal_envelope(check, room=room),
                timeout_s=REQUEST_TIMEOUT_S,
            ),
            self.repair_waits_s,
            f"room {room}: telling members events after v{seen_v} were lost",
        )

    async def aclose(self) -> None:
        tasks = list(self._repairs)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
