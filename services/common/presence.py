"""Gateway liveness in Redis: each gateway keeps a key alive; the janitor reads them.

A socket's session in rooms is named `<gateway id>:<n>` (the gateway's connection number). A
gateway that shuts down cleanly marks its sockets away itself; one that is killed leaves its
sessions behind, and its key expires `ttl` after its last heartbeat. The janitor then asks
rooms to mark that gateway's sessions away (services/janitor/jobs.py).

Why a key per gateway with a TTL rather than a per-session last-seen: one write per gateway
every few seconds, whatever its number of sockets, and expiry needs no cleanup.
"""

from typing import Final

import redis.asyncio as aioredis

GATEWAY_KEY_PREFIX: Final = "st:presence:gw:"


def gateway_key(gateway_id: str) -> str:
    return GATEWAY_KEY_PREFIX + gateway_id


def conn_id(gateway_id: str, number: int) -> str:
    return f"{gateway_id}:{number}"


def gateway_of(conn: str) -> str:
    """The gateway a session's connection id names (`<gateway id>:<n>`)."""
    return conn.rsplit(":", 1)[0]


async def beat(redis: aioredis.Redis, gateway_id: str, ttl_ms: int) -> None:
    await redis.set(gateway_key(gateway_id), b"1", px=ttl_ms)


async def forget(redis: aioredis.Redis, gateway_id: str) -> None:
    await redis.delete(gateway_key(gateway_id))


async def live_gateways(redis: aioredis.Redis) -> set[str]:
    """Gateways whose heartbeat key has not expired. SCAN, not KEYS: it never blocks Redis,
    and there are a handful of gateways."""
    found: set[str] = set()
    async for key in redis.scan_iter(match=GATEWAY_KEY_PREFIX + "*", count=500):
        name = key.decode() if isinstance(key, bytes) else str(key)
        found.add(name[len(GATEWAY_KEY_PREFIX) :])
    return found
