"""The per-user chat rate limit: a sliding window log in Redis, shared by every replica.

One sorted set per user holds the times of the messages accepted in the last window. A Lua
script trims it, counts, and adds in one step, so two replicas serving the same user at the
same instant cannot both take the last slot. A refused attempt is not recorded: someone who
keeps hammering gets through again as soon as their oldest message leaves the window.
"""

import uuid
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis

KEY_PREFIX: Final = "st:chat:rate:"

# KEYS[1] the user's set; ARGV: now_ms, window_ms, limit, a unique member for this message.
# Returns {1, 0} when accepted, {0, ms until a slot frees} when not.
_SCRIPT: Final = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, window)
return {1, 0}
"""


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_ms: int


class SlidingWindowLimiter:
    def __init__(self, redis: aioredis.Redis, limit: int, window_ms: int) -> None:
        self.limit = limit
        self.window_ms = window_ms
        self._script = redis.register_script(_SCRIPT)

    async def hit(self, user_id: str, now_ms: int) -> Verdict:
        """Take a slot for one message at `now_ms` (the caller's clock: every replica's
        hosts are NTP-synced, and tests can pass their own time)."""
        allowed, retry_after = await self._script(
            keys=[KEY_PREFIX + user_id],
            args=[now_ms, self.window_ms, self.limit, f"{now_ms}:{uuid.uuid4().hex[:8]}"],
        )
        return Verdict(bool(allowed), max(int(retry_after), 0))
