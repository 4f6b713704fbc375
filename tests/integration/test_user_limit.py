"""The per-user command rate in Redis: a token bucket shared by every gateway."""

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from services.common import runtime
from services.common.devstack import free_port
from services.gateway.ratelimit import UserLimiter

pytestmark = pytest.mark.integration


async def test_a_burst_then_the_rate(redis: aioredis.Redis) -> None:
    limiter = UserLimiter(redis, rate_per_s=20, burst=5)
    ann, bob = uuid.uuid4().hex, uuid.uuid4().hex
    taken = [await limiter.take(ann) for _ in range(8)]
    assert taken[:5] == [True] * 5 and not all(taken[5:])
    assert await limiter.take(bob), "buckets are per user"
    await asyncio.sleep(0.3)  # 20 a second: about 6 tokens back
    assert await limiter.take(ann)


async def test_two_gateways_share_one_users_bucket(redis: aioredis.Redis) -> None:
    one, two = UserLimiter(redis, 1, 4), UserLimiter(redis, 1, 4)
    user = uuid.uuid4().hex
    results = [await (one if n % 2 else two).take(user) for n in range(6)]
    assert results.count(True) == 4


async def test_without_redis_the_check_fails_open() -> None:
    nowhere = runtime.redis_client(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    try:
        assert await UserLimiter(nowhere, 1, 1).take("u")
    finally:
        await nowhere.aclose()
