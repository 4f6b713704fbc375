"""Rate limits on client frames: token buckets per socket and per user.

- Per socket, every frame (good or bad) takes a token from a bucket in this process: a socket
  lives on one gateway, so its bucket needs no sharing and costs no round trip, and it holds
  even while Redis is away.
- Per user, every command sent on to a service takes a token from a bucket in Redis, shared
  by all of the user's sockets on all gateways (many tabs, or a script opening sockets). One
  Lua call refills and takes atomically. When Redis is away this check is skipped (fails
  open): a lost limit for a minute is better than refusing every command.
- Redis is not asked on every command: that round trip was 1.5 ms of a 5 ms command path
  on a shared core. A gateway takes a few of a user's tokens at once (a lease) and spends
  them here, topping the lease up in the background before it runs out, so a command waits
  for Redis only when its user holds no leased token (a first command, or one at the limit).
  A token is still taken from the shared bucket before the command it pays for runs, so a
  user never gets more than `burst + rate * t`; and the Lua call leases only up to half of
  what the bucket has left, so near the limit leases shrink to one token and two gateways
  share the last tokens as they did without leases.
- The top-up starts when the command that found the lease low has been answered (`top_up`),
  not when its token was taken: started then, it went to Redis ahead of the command's own
  request (the loop ran its task first), and on a core shared with the rest of the system
  that command's seek reached its room 0.47 ms later (stage stamps, 2026-12-07: one command
  in four, when the lease fell to half).

A refused frame is answered with `rate_limited`; the socket lives on.
"""

import asyncio
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


# KEYS[1] the user's bucket (a hash: tokens, stamp); ARGV: rate per ms, burst, now in ms,
# most tokens wanted. Takes one token if there is one, plus up to half of what is left
# beyond it (at most ARGV[4] in all); returns how many were taken. The key expires once a
# full bucket would have refilled, so idle users cost no memory.
_TAKE: Final = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local wanted = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
if now > stamp then
  tokens = math.min(burst, tokens + (now - stamp) * rate)
  stamp = now
end
local taken = 0
if tokens >= 1 then
  taken = 1 + math.min(wanted - 1, math.floor((tokens - 1) / 2))
  tokens = tokens - taken
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'stamp', stamp)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return taken
"""

LEASE_TOKENS = 8  # most tokens taken from Redis at once
LEASE_TTL_S = 5.0  # a lease unused this long is dropped (its tokens refill in Redis anyway)
LEASES_BEFORE_PURGE = 4096  # users with leases before expired ones are swept out


class _Lease:
    __slots__ = ("asking", "expires", "refilling", "tokens")

    def __init__(self, tokens: int, expires: float) -> None:
        self.tokens = tokens
        self.expires = expires
        self.refilling = False
        # Asks of Redis under way for this user (commands' and top-ups'), done when their
        # tokens are in the lease.
        self.asking: set[asyncio.Future[None]] = set()


class UserLimiter:
    def __init__(
        self,
        redis: aioredis.Redis,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_ms = rate_per_s / 1000
        self.burst = burst
        self._script = redis.register_script(_TAKE)
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._refills: set[asyncio.Task[None]] = set()
        self._warned_at = 0.0

    async def take(self, user_id: str) -> bool:
        """A token for one command: from this gateway's lease when it holds one, else from
        Redis now; True when Redis cannot be asked (fail open). Call `top_up` once the
        command is answered."""
        now = self._clock()
        lease = self._leases.get(user_id)
        if lease is not None and lease.tokens > 0 and lease.expires > now:
            lease.tokens -= 1
            return True
        # Into the lease, then one out of it: commands of this user that asked at the same
        # time share what each ask got, so none is refused while the lease holds a token.
        if not await self._ask_into_lease(user_id, LEASE_TOKENS):
            return True
        lease = self._lease(user_id)
        # Asks answer on different connections, so ours may be back with nothing before
        # another that took the bucket's last tokens: wait for those tokens rather than
        # refuse the command and leave them unused in the lease.
        while lease.tokens == 0 and lease.asking:
            await asyncio.wait(list(lease.asking))
        if lease.tokens == 0:
            return False
        lease.tokens -= 1
        return True

    async def _ask_into_lease(self, user_id: str, wanted: int) -> bool:
        """Ask Redis for up to `wanted` tokens and put them in the user's lease; False when
        Redis cannot be asked."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        asking = self._lease(user_id).asking
        asking.add(done)
        try:
            taken = await self._ask(user_id, wanted)
            if taken:
                self._lease(user_id).tokens += taken
            return taken is not None
        finally:
            asking.discard(done)
            done.set_result(None)

    async def aclose(self) -> None:
        """Wait for the top-ups under way (they hold Redis connections)."""
        if self._refills:
            await asyncio.gather(*self._refills, return_exceptions=True)

    def _lease(self, user_id: str) -> _Lease:
        now = self._clock()
        lease = self._leases.get(user_id)
        if lease is None or lease.expires <= now:
            if len(self._leases) >= LEASES_BEFORE_PURGE:
                self._leases = {u: x for u, x in self._leases.items() if x.expires > now}
            lease = self._leases[user_id] = _Lease(0, now + LEASE_TTL_S)
        lease.expires = now + LEASE_TTL_S
        return lease

    def top_up(self, user_id: str) -> None:
        """After a command: refill the user's lease in the background if it has fallen to
        half, so the next commands find tokens here."""
        lease = self._leases.get(user_id)
        if lease is None or lease.refilling or lease.expires <= self._clock():
            return  # none (or an expired one): the next command asks Redis itself
        if lease.tokens <= LEASE_TOKENS // 2:
            self._refill(user_id, lease)

    def _refill(self, user_id: str, lease: _Lease) -> None:
        """Top the lease up off the command's path."""
        lease.refilling = True

        async def refill() -> None:
            try:
                await self._ask_into_lease(user_id, LEASE_TOKENS - lease.tokens)
            finally:
                lease.refilling = False

        task = asyncio.get_running_loop().create_task(refill())
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    async def _ask(self, user_id: str, wanted: int) -> int | None:
        """Tokens taken from the user's bucket in Redis (0 to `wanted`); None when Redis
        cannot be asked."""
        try:
            taken = await self._script(
                keys=[USER_KEY_PREFIX + user_id],
                args=[self.rate_per_ms, self.burst, int(time.time() * 1000), max(1, wanted)],
            )
        except (RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned_at > 30:  # one line per 30 s, not one per command
                self._warned_at = now
                log.warning("per-user rate limit skipped, redis unavailable: %r", exc)
            return None
        return int(taken)
