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
    await limiter.aclose()


async def test_two_gateways_share_one_users_bucket(redis: aioredis.Redis) -> None:
    one, two = UserLimiter(redis, 1, 4), UserLimiter(redis, 1, 4)
    user = uuid.uuid4().hex
    results = [await (one if n % 2 else two).take(user) for n in range(6)]
    assert results.count(True) == 4
    await one.aclose()
    await two.aclose()


async def test_without_redis_the_check_fails_open() -> None:
    nowhere = runtime.redis_client(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    try:
        assert await UserLimiter(nowhere, 1, 1).take("u")
    finally:
        await nowhere.aclose()


def _counting_asks(limiter: UserLimiter) -> tuple[UserLimiter, list[int]]:
    """The limiter, its Lua calls to Redis counted (one item per ask) in the list."""
    asked: list[int] = []
    script = limiter._script

    async def counted(**kwargs: object) -> object:
        asked.append(1)
        return await script(**kwargs)

    limiter._script = counted  # type: ignore[assignment]
    return limiter, asked


async def test_a_steady_user_does_not_wait_for_redis(redis: aioredis.Redis) -> None:
    """Leases: Redis is asked for a few tokens at a time, not on every command."""
    limiter, asked = _counting_asks(UserLimiter(redis, rate_per_s=30, burst=90))
    user = uuid.uuid4().hex
    for _ in range(40):
        assert await limiter.take(user)
        limiter.top_up(user)  # as the gateway does once the command is answered
        await asyncio.sleep(0)  # let a top-up run, as commands' awaits do
    await limiter.aclose()
    assert len(asked) <= 40 // 4 + 2, len(asked)


# BUG: the top-up started inside `take`, and its task ran before the command's own request
# went out: on the one core the stack shares, that command reached rooms 0.47 ms later.
async def test_taking_a_token_never_goes_to_redis_ahead_of_the_command(
    redis: aioredis.Redis,
) -> None:
    limiter, asked = _counting_asks(UserLimiter(redis, rate_per_s=30, burst=90))
    user = uuid.uuid4().hex
    assert await limiter.take(user)  # no lease yet: this one asks, and leases 7 more
    for _ in range(6):  # down to one token: well below half, yet nothing asked
        assert await limiter.take(user)
        for _ in range(3):
            await asyncio.sleep(0)
    assert len(asked) == 1
    limiter.top_up(user)  # the command is answered: now the lease is refilled
    for _ in range(20):
        await asyncio.sleep(0)
        if limiter._leases[user].tokens > 1:
            break
    await limiter.aclose()
    assert len(asked) == 2
    assert limiter._leases[user].tokens > 1


async def test_leases_never_exceed_the_shared_bucket(redis: aioredis.Redis) -> None:
    """Three gateways, one user, far more commands than tokens: no more pass than the
    bucket held (the rate is too slow to add one during the test)."""
    gateways = [UserLimiter(redis, rate_per_s=0.01, burst=12) for _ in range(3)]
    user = uuid.uuid4().hex
    passed = await asyncio.gather(*(gw.take(user) for _ in range(20) for gw in gateways))
    for gw in gateways:
        await gw.aclose()
    assert 0 < passed.count(True) <= 12


async def test_concurrent_first_commands_share_what_each_ask_got(redis: aioredis.Redis) -> None:
    """A burst from a user with no lease yet: every command asks Redis at once, and the
    tokens an ask got beyond its own serve the others (none stranded in the lease)."""
    limiter = UserLimiter(redis, rate_per_s=0.01, burst=12)
    user = uuid.uuid4().hex
    passed = await asyncio.gather(*(limiter.take(user) for _ in range(20)))
    await limiter.aclose()
    assert 10 <= passed.count(True) <= 12


class GatedScript:
    """Stands in for the Lua call: each ask waits for its gate, then returns its tokens, so
    a test decides in which order concurrent asks come back (as on several connections)."""

    def __init__(self) -> None:
        self.asks: list[tuple[asyncio.Event, int]] = []

    def answer(self, tokens: int) -> asyncio.Event:
        gate = asyncio.Event()
        self.asks.append((gate, tokens))
        return gate

    async def __call__(self, keys: list[str], args: list[object]) -> int:
        gate, tokens = self.asks.pop(0)
        await gate.wait()
        return tokens


# BUG: an ask that came back empty was refused at once, while another ask under way was
# bringing the bucket's last tokens; those then sat unused in the lease (4 of a burst of 15
# in one run of the e2e abuse test).
async def test_a_command_waits_for_tokens_another_ask_is_bringing(redis: aioredis.Redis) -> None:
    limiter = UserLimiter(redis, rate_per_s=0.01, burst=3)
    script = GatedScript()
    limiter._script = script  # type: ignore[assignment]
    user = uuid.uuid4().hex
    brings_three = script.answer(3)
    brings_none = script.answer(0)
    first = asyncio.create_task(limiter.take(user))
    second = asyncio.create_task(limiter.take(user))
    await asyncio.sleep(0.01)
    brings_none.set()  # the second command's ask is back first, empty
    await asyncio.sleep(0.01)
    assert not second.done(), "it waits for the ask still under way"
    brings_three.set()
    assert await first and await second
    assert limiter._leases[user].tokens == 1
    await limiter.aclose()
