"""`GET /api/stats` over NATS: every process answers a scatter request with its figures.

A process calls `serve` once with a small function returning its figures; the asker (the
gateway) publishes one request on `st.stats.gather` and `gather` collects the replies that
arrive within a short window. Nobody keeps a registry of replicas: whoever answers counts.
"""

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .contracts import subjects
from .contracts.envelope import StatsReply

log = logging.getLogger(__name__)

Figures = Callable[[], Awaitable[tuple[dict[str, float], dict[str, float]]]]


class RateMeter:
    """Events per second over the last `window_s` whole seconds: one counter per second in a
    ring, so marking is O(1) and memory is fixed."""

    def __init__(self, window_s: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._clock = clock
        self._counts = [0] * (window_s + 1)
        self._seconds = [-1] * (window_s + 1)

    def mark(self, n: int = 1) -> None:
        second = int(self._clock())
        slot = second % len(self._counts)
        if self._seconds[slot] != second:
            self._seconds[slot] = second
            self._counts[slot] = 0
        self._counts[slot] += n

    def per_second(self) -> float:
        """The mean over the last `window_s` complete seconds (the current one is partial)."""
        now = int(self._clock())
        total = sum(
            c
            for c, s in zip(self._counts, self._seconds, strict=True)
            if now - self.window_s <= s < now
        )
        return total / self.window_s


def instance_id() -> str:
    return f"{os.uname().nodename[:20]}-{os.getpid()}"


async def serve(nc: NATS, service: str, instance: str, figures: Figures) -> Subscription:
    """Answer every stats request with this process's figures: (process, shared)."""

    async def on_request(msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            process, shared = await figures()
            reply = StatsReply(service=service, instance=instance, process=process, shared=shared)
            await msg.respond(reply.model_dump_json().encode())
        except Exception:  # a stats failure must never take a service down
            log.exception("stats reply failed")

    return await nc.subscribe(subjects.STATS_GATHER, cb=on_request)


async def gather(nc: NATS, window_s: float = 0.3, max_replies: int = 10_000) -> list[StatsReply]:
    """Ask every process; keep what arrives within `window_s`."""
    inbox = nc.new_inbox()
    replies: list[StatsReply] = []
    done = asyncio.Event()

    async def on_reply(msg: Msg) -> None:
        try:
            replies.append(StatsReply.model_validate_json(msg.data))
        except ValueError:
            log.warning("bad stats reply on %s", msg.subject)
        if len(replies) >= max_replies:
            done.set()

    sub = await nc.subscribe(inbox, cb=on_reply)
    try:
        await nc.publish(subjects.STATS_GATHER, b"{}", reply=inbox)
        try:
            await asyncio.wait_for(done.wait(), window_s)
        except TimeoutError:
            pass
    finally:
        await sub.unsubscribe()
    return replies


def summarize(replies: list[StatsReply], window_s: float) -> dict[str, object]:
    """One answer from every process's: per gateway, per service, and the totals.

    `process` figures add up over a service's replicas; `shared` ones (read from the
    service's database) are the same in each, so the largest (freshest) is taken once.
    """
    services: dict[str, dict[str, float]] = {}
    gateways: dict[str, dict[str, float]] = {}
    for reply in sorted(replies, key=lambda r: (r.service, r.instance)):
        if reply.service == "gateway":
            gateways[reply.instance] = dict(reply.process)
        summary = services.setdefault(reply.service, {"replicas": 0})
        summary["replicas"] += 1
        for name, value in reply.process.items():
            summary[name] = summary.get(name, 0.0) + value
        for name, value in reply.shared.items():
            summary[name] = max(summary.get(name, value), value)
    gw = services.get("gateway", {})
    rooms = services.get("rooms", {})
    return {
        "rooms": int(rooms.get("rooms", 0)),
        "rooms_total": int(rooms.get("rooms_total", 0)),
        "users_online": int(rooms.get("users_online", 0)),
        "connections": int(gw.get("connections", 0)),
        "messages_per_s": round(gw.get("messages_per_s", 0.0), 3),
        "events_per_s": round(gw.get("events_per_s", 0.0), 3),
        "gateways": gateways,
        "services": services,
        "window_ms": int(window_s * 1000),
    }
