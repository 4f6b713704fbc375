"""This gateway's liveness key in Redis, rewritten every PRESENCE_HEARTBEAT_SECONDS.

If the process dies (kill -9, a lost node), the key expires after three missed beats and the
janitor has rooms mark this gateway's sessions away (services/common/presence.py). A failed
write (Redis restarting) is retried on the next beat; the janitor waits long enough that a
short Redis outage does not make a live gateway look dead.
"""

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.common import presence

log = logging.getLogger(__name__)

MISSED_BEATS_TO_EXPIRE = 3


async def run(redis: aioredis.Redis, gateway_id: str, every_s: float) -> None:
    ttl_ms = int(every_s * MISSED_BEATS_TO_EXPIRE * 1000)
    failing = False
    while True:
        try:
            await presence.beat(redis, gateway_id, ttl_ms)
            if failing:
                log.info("presence heartbeat written again")
            failing = False
        except (RedisError, OSError) as exc:
            if not failing:
                log.warning("presence heartbeat failed: %r", exc)
            failing = True
        await asyncio.sleep(every_s)


async def stop(task: asyncio.Task[None], redis: aioredis.Redis, gateway_id: str) -> None:
    """A clean shutdown: stop beating and drop the key (our sockets were marked away by the
    drain already, so the janitor has nothing to do for this gateway)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    with contextlib.suppress(RedisError, OSError):
        await presence.forget(redis, gateway_id)
