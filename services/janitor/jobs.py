"""The janitor's jobs. Each asks the service that owns the data (internal NATS commands) and
is idempotent: run twice, or by two leaders at once, it does what one run does.

- presence: gateways with live sessions but no heartbeat in Redis for
  GATEWAY_DEAD_AFTER_SECONDS are dead; rooms marks their sessions away. Away sessions older
  than PRESENCE_AWAY_TIMEOUT_SECONDS leave their rooms (a `members` event for everyone).
- maintenance: close rooms empty for ROOM_CLOSE_AFTER_EMPTY_SECONDS, purge the queue and chat
  rows of closed rooms, and trim chat, audit, played queue entries, the command logs
  (idempotency) and stale guests.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from pydantic import BaseModel

from services.common import bus, presence
from services.common.contracts import subjects
from services.common.contracts.commands import NoData
from services.common.contracts.envelope import (
    ClosedRooms,
    CloseIdleRooms,
    PresenceGateways,
    PresenceSweep,
    PresenceSweepReply,
    PurgeOrphans,
    RetentionKind,
    RetentionRequest,
    RowsDeleted,
)
from services.common.jsonutil import now_ms

from . import metrics
from .settings import JanitorSettings

log = logging.getLogger(__name__)

_DAY_MS = 24 * 3600 * 1000
# A batch of 1000 rows is deleted in well under a second; a request lost in a bus outage
# must not hold the jobs up for long (the next beat simply asks again).
_UPKEEP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Retention:
    service: str
    kind: RetentionKind
    keep_ms: int


class Jobs:
    def __init__(self, nc: NATS, redis: aioredis.Redis, settings: JanitorSettings) -> None:
        self.nc = nc
        self.redis = redis
        self.settings = settings
        # Gateway id -> when this leader first saw it without a heartbeat (monotonic s).
        # Starts empty on every new leader: a takeover only delays a verdict, never hastens it.
        self._missing_since: dict[str, float] = {}
        hours, days = 3600 * 1000, _DAY_MS
        s = settings
        self.retention = [
            Retention("chat", "messages", int(s.chat_retention_days * days)),
            Retention("rooms", "audit", int(s.audit_retention_days * days)),
            Retention("queue", "entries", int(s.queue_history_retention_days * days)),
            Retention("auth", "guests", int(s.guest_retention_days * days)),
            *(
                Retention(service, "commands", int(s.command_log_retention_hours * hours))
                for service in ("rooms", "queue", "chat")
            ),
        ]

    def forget(self) -> None:
        """This replica stopped leading: its observations are stale when it leads again."""
        self._missing_since.clear()

    # -- presence ----------------------------------------------------------------------

    async def presence(self) -> PresenceSweepReply:
        holding = PresenceGateways.model_validate(
            await self._ask("rooms", "presence_gateways", NoData())
        ).gateways
        alive = await presence.live_gateways(self.redis)
        dead = self.dead_gateways(set(holding), alive, time.monotonic())
        if dead:
            log.warning("gateways without a heartbeat: %s", ", ".join(dead))
        cutoff = now_ms() - int(self.settings.presence_away_timeout_seconds * 1000)
        reply = PresenceSweepReply.model_validate(
            await self._ask(
                "rooms",
                "presence_sweep",
                PresenceSweep(
                    dead_gateways=dead, away_before_ms=cutoff, limit=self.settings.batch_size
                ),
            )
        )
        metrics.ROWS.labels("presence").inc(reply.marked_away + reply.removed)
        return reply

    def dead_gateways(self, holding: set[str], alive: set[str], now_s: float) -> list[str]:
        """Gateways that hold sessions and have had no heartbeat for the whole grace."""
        missing = holding - alive
        for gateway in list(self._missing_since):
            if gateway not in missing:
                del self._missing_since[gateway]
        for gateway in missing:
            self._missing_since.setdefault(gateway, now_s)
        grace = self.settings.gateway_dead_after_seconds
        return sorted(g for g, since in self._missing_since.items() if now_s - since >= grace)

    # -- maintenance -------------------------------------------------------------------

    async def close_idle_rooms(self) -> int:
        cutoff = now_ms() - int(self.settings.room_close_after_empty_seconds * 1000)
        closed = 0
        for _ in range(self.settings.batches_per_run):
            reply = ClosedRooms.model_validate(
                await self._ask("rooms", "close_idle", CloseIdleRooms(empty_before_ms=cutoff))
            )
            closed += len(reply.rooms)
            if not reply.rooms:
                break
        # Whatever rooms closed (now or by an earlier leader that died midway), their queue
        # and chat rows go too.
        for service in ("queue", "chat"):
            await self._drain(service, "purge_orphans", PurgeOrphans(limit=self.batch))
        metrics.ROWS.labels("close_idle").inc(closed)
        return closed

    async def trim(self, item: Retention) -> int:
        request = RetentionRequest(
            kind=item.kind, before_ms=now_ms() - item.keep_ms, limit=self.batch
        )
        deleted = await self._drain(item.service, "retention", request)
        metrics.ROWS.labels(f"retention_{item.kind}").inc(deleted)
        return deleted

    @property
    def batch(self) -> int:
        return self.settings.batch_size

    async def _drain(self, service: str, command: str, request: BaseModel) -> int:
        """Repeat a bounded delete while it deletes full batches (bounded per run)."""
        total = 0
        for _ in range(self.settings.batches_per_run):
            deleted = RowsDeleted.model_validate(await self._ask(service, command, request))
            total += deleted.deleted
            if deleted.deleted < self.batch:
                break
        return total

    async def _ask(self, service: str, command: str, request: BaseModel) -> Any:
        return await bus.request(
            self.nc, subjects.command(service, command), request, timeout_s=_UPKEEP_TIMEOUT_S
        )

    def maintenance(self) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
        """The slow jobs, named: each runs on its own, so one failing skips no other."""
        jobs: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("close_idle", self.close_idle_rooms)
        ]
        for item in self.retention:
            jobs.append((f"retention_{item.service}_{item.kind}", _bind(self.trim, item)))
        return jobs


def _bind(
    fn: Callable[[Retention], Awaitable[int]], item: Retention
) -> Callable[[], Awaitable[int]]:
    async def run() -> int:
        return await fn(item)

    return run
