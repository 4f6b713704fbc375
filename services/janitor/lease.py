"""The leader's lease: one Redis key holding the leader's id, with a TTL it keeps renewing.

Take it with `SET key me NX PX lease` (only if nobody holds it); renew and release with small
Lua scripts that act only while the key still holds our id (compare-and-renew), so a replica
that lost the lease (it paused past the TTL and another took over) can never extend or delete
the new leader's. There is no fencing token: every job is idempotent and re-checks its
condition under the owning service's locks, so two leaders overlapping for a moment (the old
one has not noticed yet) do no harm, only duplicate work.
"""

from typing import Final

import redis.asyncio as aioredis

LEASE_KEY: Final = "st:janitor:leader"

# KEYS[1] the lease; ARGV[1] our id, ARGV[2] the lease in ms. 1 = renewed, 0 = not ours.
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] the lease; ARGV[1] our id. 1 = released, 0 = not ours.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    def __init__(self, redis: aioredis.Redis, holder: str, lease_ms: int, key: str = LEASE_KEY):
        self.redis = redis
        self.holder = holder
        self.lease_ms = lease_ms
        self.key = key
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    async def acquire(self) -> bool:
        """Take the lease if nobody holds it; True if we hold it now (also if we already
        did: a leader whose process restarted with the same id takes it back at once)."""
        if await self.redis.set(self.key, self.holder, nx=True, px=self.lease_ms):
            return True
        return await self.renew()

    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self.key], args=[self.holder, self.lease_ms]))

    async def release(self) -> bool:
        """Give the lease up (clean shutdown), so a standby takes over without waiting."""
        return bool(await self._release(keys=[self.key], args=[self.holder]))

    async def holder_now(self) -> str | None:
        value = await self.redis.get(self.key)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def remaining_ms(self) -> int:
        """How long until the lease expires; 0 when nobody holds it."""
        return max(int(await self.redis.pttl(self.key)), 0)
