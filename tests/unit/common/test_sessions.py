"""Signed-out sessions: the one check every gateway runs on a token (a Redis read)."""

import uuid
from collections.abc import AsyncIterator

import jwt
import pytest
import redis.asyncio as aioredis

from services.common import sessions, tokens
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import UserRef
from services.common.devstack import free_port

pytestmark = pytest.mark.integration

SECRET = "test-secret-0123456789abcdef0123456789"


@pytest.fixture
async def redis(infra: dict[str, str]) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(infra["REDIS_URL"])
    yield client
    await client.aclose()


def new_token(expires_s: int = 3600) -> str:
    return tokens.issue(SECRET, UserRef(id=uuid.uuid4().hex, name="Ann"), expires_s)


async def code_of(redis: aioredis.Redis, token: str) -> ErrorCode:
    with pytest.raises(ServiceError) as info:
        await sessions.authenticate(redis, SECRET, token)
    return info.value.code


async def test_a_good_token_names_its_user(redis: aioredis.Redis) -> None:
    token = new_token()
    user, claims = await sessions.authenticate(redis, SECRET, token)
    assert user.name == "Ann" and claims["sid"]


async def test_a_revoked_session_is_refused_and_only_that_one(redis: aioredis.Redis) -> None:
    token, other = new_token(), new_token()
    _user, claims = await sessions.authenticate(redis, SECRET, token)
    await sessions.revoke(redis, claims)
    assert await code_of(redis, token) is ErrorCode.UNAUTHORIZED
    await sessions.authenticate(redis, SECRET, other)


async def test_the_revocation_lives_as_long_as_the_token(redis: aioredis.Redis) -> None:
    token = new_token(expires_s=600)
    claims = tokens.verify(SECRET, token)[1]
    await sessions.revoke(redis, claims)
    ttl = await redis.ttl(sessions.revoked_key(claims["sid"]))
    assert 590 <= ttl <= 601  # no longer: after that the token is expired anyway


async def test_revoking_an_expired_token_stores_nothing(redis: aioredis.Redis) -> None:
    claims = {"sid": uuid.uuid4().hex, "exp": 1}
    await sessions.revoke(redis, claims)
    assert not await redis.exists(sessions.revoked_key(claims["sid"]))


async def test_invalid_expired_and_sessionless_tokens_are_refused(redis: aioredis.Redis) -> None:
    assert await code_of(redis, "not-a-jwt") is ErrorCode.UNAUTHORIZED
    assert await code_of(redis, new_token(expires_s=-1)) is ErrorCode.UNAUTHORIZED
    no_sid = jwt.encode(
        {"iss": tokens.ISSUER, "sub": "u", "iat": 1, "exp": 2**40}, SECRET, algorithm="HS256"
    )
    assert await code_of(redis, no_sid) is ErrorCode.UNAUTHORIZED


async def test_without_redis_no_token_is_accepted() -> None:
    gone = aioredis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    try:
        assert await code_of(gone, new_token()) is ErrorCode.UNAVAILABLE
    finally:
        await gone.aclose()
