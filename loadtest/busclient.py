"""The bus drivers' side of NATS: commands sent exactly as the gateway sends them.

The gateway wraps a client frame in the envelope `{"id", "user", "room", "conn", "data"}`
(services/gateway/commands.py, `Dispatcher._request`; the model is CommandEnvelope) and asks
`ROUTES[type].subject`; so does this client, bypassing the gateway. A user's request ids are
unique per run (the services remember (user, id) for idempotency).
"""

import itertools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import nats
import orjson
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError, SlowConsumerError
from nats.errors import TimeoutError as NatsTimeoutError

from services.common.contracts.commands import ROUTES
from services.common.contracts.envelope import CommandEnvelope

log = logging.getLogger(__name__)


@dataclass
class Actor:
    """A made-up user with one made-up socket (`<gateway id>:<n>`, as a gateway names them)."""

    user_id: str
    name: str
    conn: str
    _ids: Any = field(default_factory=itertools.count, repr=False)

    @property
    def user(self) -> dict[str, Any]:
        return {"id": self.user_id, "name": self.name, "admin": False}

    def next_id(self) -> str:
        return f"ld{next(self._ids)}"


@dataclass(frozen=True, slots=True)
class Reply:
    ok: bool
    data: dict[str, Any]
    code: str | None = None  # the error code when not ok
    acked: bool = True  # False: no reply came (timeout)
    latency_ms: float = 0.0


def envelope(actor: Actor, room: str | None, data: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {"id": actor.next_id(), "user": actor.user, "room": room, "conn": actor.conn, "data": data}
    )


class BusClient:
    def __init__(self, nc: NATS, timeout_s: float | None) -> None:
        self.nc = nc
        self.timeout_s = timeout_s
        self.nats_errors: Counter[str] = Counter()

    @classmethod
    async def connect(cls, url: str, name: str, timeout_s: float | None) -> "BusClient":
        client: BusClient

        async def error_cb(exc: Exception) -> None:
            # A slow consumer here means this process dropped events: it must show.
            kind = "slow_consumer" if isinstance(exc, SlowConsumerError) else type(exc).__name__
            client.nats_errors[kind] += 1
            log.warning("nats: %r", exc)

        nc = await nats.connect(
            url,
            name=name,
            error_cb=error_cb,
            max_reconnect_attempts=3,
            connect_timeout=5,
            pending_size=64 * 1024 * 1024,
        )
        client = cls(nc, timeout_s)
        return client

    async def close(self) -> None:
        if not self.nc.is_closed:
            await self.nc.drain()

    async def command(
        self, command: str, actor: Actor, room: str | None, data: dict[str, Any] | None = None
    ) -> Reply:
        """Send client command `command` (a ROUTES key) as `actor`, timed from now."""
        return await self.request(command, envelope(actor, room, data or {}), time.perf_counter())

    async def request(self, command: str, payload: bytes, since: float) -> Reply:
        """Send a ready envelope; the latency is counted from `since` (perf_counter s)."""
        route = ROUTES[command]
        return await self.ask(route.subject, payload, since, self.timeout_s or route.timeout_s)

    async def ask(self, subject: str, payload: bytes, since: float, timeout_s: float) -> Reply:
        """Any request/reply subject (service-to-service ones such as st.auth.cmd.guest too).
        No responders is a reply of sorts (`unavailable`: nothing was applied); a timeout is
        no reply at all."""
        try:
            msg = await self.nc.request(subject, payload, timeout=timeout_s)
        except NoRespondersError:
            return Reply(False, {}, "unavailable", latency_ms=ms_since(since))
        except NatsTimeoutError:
            return Reply(False, {}, "timeout", acked=False, latency_ms=ms_since(since))
        return parse(msg.data, ms_since(since))


def parse(raw: bytes, latency_ms: float) -> Reply:
    reply = orjson.loads(raw)
    if reply.get("ok"):
        return Reply(True, reply.get("data") or {}, latency_ms=latency_ms)
    code = str((reply.get("error") or {}).get("code", "internal"))
    return Reply(False, {}, code, latency_ms=latency_ms)


def ms_since(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def check_envelope_shape() -> None:
    """Fail at once, not after a minute of errors, if the contract changed under us."""
    sample = Actor("u", "n", "gw:1")
    CommandEnvelope.model_validate_json(envelope(sample, "room", {}))
