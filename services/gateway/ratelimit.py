"""Rate limits on client frames: token buckets per socket and per user.

- Per socket, every frame (good or bad) takes a token from a bucket in this process: a socket
  lives on one gateway, so its bucket needs no sharing and costs no round trip, and it holds
  even while Redis is away.
- Per user, every command sent on to a service takes a token from a bucket in Redis, shared
  by all of the user's sockets on all gateways (many tabs, or a script opening sockets). One
  Lua call refills and takes atomically. When Redis is away this check is skipped (fails
  open): a lost limit for a minute is better than refusing every command.

A refused frame is answered with `rate_limited`; the socket lives on.
"""

import logging
import time
from collections.abc import Callable
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

USER_KEY_PREFIX: Final = "st:rate:user:"


class TokenBucket:
    """`rate` tokens a second up to `burst`; `take` is O(1) and never waits."""

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self, n: float = 1.0) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False


# KEYS[1] the user's bucket (a hash: tokens, stamp); ARGV: rate per ms, burst, now in ms.
# Returns 1 when a token was taken. The key expires once a full bucket would have refilled,
# so idle users cost no memory.
_TAKE: Final = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
if now > stamp then
  tokens = math.min(burst, tokens + (now - stamp) * rate)
  stamp = now
end
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'stamp', stamp)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return taken
"""


class UserLimiter:
    def __init__(self, redis: aioredis.Redis, rate_per_s: float, burst: int) -> None:
        self.rate_per_ms = rate_per_s / 1000
        self.burst = burst
        self._script = redis.register_script(_TAKE)
        self._warned_at = 0.0

    async def take(self, user_id: str) -> bool:
        """A token for one command; True when Redis cannot be asked (fail open)."""
        try:
            taken = await self._script(
                keys=[USER_KEY_PREFIX + user_id],
                args=[self.rate_per_ms, self.burst, int(time.time() * 1000)],
            )
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned_at > 30:  # one line per 30 s, not one per command
                self._warned_at = now
                log.warning("per-user rate limit skipped, redis unavailable: %r", exc)
            return True
        return bool(taken)
