"""The chat rate limit's sliding window, against a real Redis, with the clock in our hands."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from services.chat.ratelimit import KEY_PREFIX, SlidingWindowLimiter
from services.chat.settings import ChatSettings

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000


@pytest.fixture
async def redis(infra: dict[str, str]) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(infra["REDIS_URL"])
    yield client
    await client.aclose()


def user() -> str:
    return uuid.uuid4().hex


async def test_the_defaults_are_five_messages_in_five_seconds() -> None:
    settings = ChatSettings(_env_file=None)
    assert (settings.chat_rate_limit_messages, settings.chat_rate_limit_window_s) == (5, 5.0)


async def test_five_in_the_window_then_refused_until_the_oldest_leaves(
    redis: aioredis.Redis,
) -> None:
    limiter = SlidingWindowLimiter(redis, limit=5, window_ms=5000)
    ann = user()
    for i in range(5):
        assert (await limiter.hit(ann, T0 + i * 100)).allowed
    refused = await limiter.hit(ann, T0 + 1000)
    assert not refused.allowed and refused.retry_after_ms == 4000  # the first leaves at T0+5 s
    assert not (await limiter.hit(ann, T0 + 4999)).allowed
    # Sliding, not fixed windows: at T0 + 5 s exactly one slot (the first message's) frees.
    assert (await limiter.hit(ann, T0 + 5000)).allowed
    assert not (await limiter.hit(ann, T0 + 5050)).allowed
    assert (await limiter.hit(ann, T0 + 5100)).allowed


async def test_refused_attempts_are_not_counted(redis: aioredis.Redis) -> None:
    limiter = SlidingWindowLimiter(redis, limit=2, window_ms=1000)
    bob = user()
    assert (await limiter.hit(bob, T0)).allowed
    assert (await limiter.hit(bob, T0 + 10)).allowed
    for t in range(20, 1000, 10):  # hammering while limited
        assert not (await limiter.hit(bob, T0 + t)).allowed
    assert (await limiter.hit(bob, T0 + 1000)).allowed


async def test_users_are_limited_separately(redis: aioredis.Redis) -> None:
    limiter = SlidingWindowLimiter(redis, limit=1, window_ms=60_000)
    a, b = user(), user()
    assert (await limiter.hit(a, T0)).allowed
    assert not (await limiter.hit(a, T0 + 1)).allowed
    assert (await limiter.hit(b, T0 + 1)).allowed


async def test_concurrent_hits_never_exceed_the_limit(redis: aioredis.Redis) -> None:
    """Two replicas at the same instant: the script is atomic, so exactly `limit` pass."""
    limiters = [SlidingWindowLimiter(redis, limit=5, window_ms=5000) for _ in range(2)]
    carol = user()
    verdicts = await asyncio.gather(*(limiters[i % 2].hit(carol, T0) for i in range(40)))
    assert sum(v.allowed for v in verdicts) == 5


async def test_the_key_expires_with_the_window(redis: aioredis.Redis) -> None:
    limiter = SlidingWindowLimiter(redis, limit=5, window_ms=5000)
    dave = user()
    await limiter.hit(dave, T0)
    ttl_ms = await redis.pttl(KEY_PREFIX + dave)
    assert 0 < ttl_ms <= 5000  # an idle user leaves nothing behind
