"""Sessions: every token names one (`sid`), and signing out revokes it.

auth revokes a session by writing its key to Redis with a TTL equal to the token's remaining
lifetime (after that the token is expired anyway, and the key may go). Every gateway checks
it with one Redis read when a socket connects and on /auth/me, with no round trip to auth:
`authenticate` below is the one place that decides whether a token is still good.
"""

from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from . import tokens
from .contracts.errors import ErrorCode, ServiceError
from .contracts.models import UserRef
from .jsonutil import now_ms

REVOKED_PREFIX: Final = "st:auth:revoked:"


def revoked_key(session_id: str) -> str:
    return REVOKED_PREFIX + session_id


def session_of(claims: dict[str, Any]) -> str:
    sid = claims.get("sid")
    if not isinstance(sid, str) or not sid:
        # A token without a session could never be signed out: not one of ours.
        raise ServiceError(ErrorCode.UNAUTHORIZED, "Invalid or expired token.")
    return sid


async def authenticate(
    redis: aioredis.Redis, secret: str, token: str
) -> tuple[UserRef, dict[str, Any]]:
    """The user a token names, unless it is invalid, expired or signed out (`unauthorized`).
    Fails closed: without Redis no token is accepted (`unavailable`)."""
    user, claims = tokens.verify(secret, token)
    sid = session_of(claims)
    try:
        revoked = await redis.exists(revoked_key(sid))
    except (RedisError, OSError) as exc:
        raise ServiceError(ErrorCode.UNAVAILABLE, "Sessions cannot be checked now.") from exc
    if revoked:
        raise ServiceError(ErrorCode.UNAUTHORIZED, "This token was signed out.")
    return user, claims


async def revoke(redis: aioredis.Redis, claims: dict[str, Any]) -> None:
    """Sign the token's session out until the token would have expired."""
    ttl_s = int(claims["exp"]) - now_ms() // 1000
    if ttl_s > 0:
        await redis.set(revoked_key(session_of(claims)), b"1", ex=ttl_s + 1)
