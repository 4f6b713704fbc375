"""Guest sign-in, who-am-I and sign-out; tokens are signed here and verified by every
gateway. Google sign-in is in google.py."""

import unicodedata
import uuid
from typing import Any

import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import bus, db, sessions, tokens
from services.common.contracts import subjects
from services.common.contracts.envelope import (
    CommandEnvelope,
    GuestRequest,
    LogoutRequest,
    SignoutNotice,
    TokenReply,
)
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import UserRef
from services.common.jsonutil import now_ms

from . import repository as repo


def clean_name(name: str) -> str:
    """A display name without control characters or surrounding space; never empty."""
    cleaned = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if not cleaned:
        raise ServiceError(ErrorCode.BAD_REQUEST, "name: must contain visible characters")
    return cleaned[:40]


class AuthService:
    def __init__(
        self,
        engine: AsyncEngine,
        redis: aioredis.Redis,
        nc: NATS,
        jwt_secret: str,
        expires_s: int,
    ) -> None:
        self.engine = engine
        # A guest's sign-in is one INSERT: autocommitted on PostgreSQL, without the BEGIN and
        # COMMIT round trips around it (db.single_statements). (engine is None only in tests
        # that never touch the database.)
        self._single_statements: AsyncEngine = engine and db.single_statements(engine)
        self.redis = redis
        self.nc = nc
        self.jwt_secret = jwt_secret
        self.expires_s = expires_s

    async def guest(self, request: GuestRequest) -> TokenReply:
        now = now_ms()
        user = UserRef(id=uuid.uuid4().hex, name=clean_name(request.name))
        async with self._single_statements.begin() as conn:
            await repo.insert_user(
                conn,
                id=user.id,
                name=user.name,
                kind="guest",
                email=None,
                created_at_ms=now,
                last_seen_ms=now,
            )
        return TokenReply(token=tokens.issue(self.jwt_secret, user, self.expires_s), user=user)

    async def me(self, env: CommandEnvelope) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = await repo.get_user(conn, env.user.id)
        if row is None:
            raise ServiceError(ErrorCode.UNAUTHORIZED, "The token names no known user.")
        return {
            "id": row.id,
            "name": row.name,
            "kind": row.kind,
            "email": row.email,
            "admin": env.user.admin,
            "created_at_ms": row.created_at_ms,
        }

    async def logout(self, request: LogoutRequest) -> dict[str, Any]:
        """Revoke the token's session (new sockets and /auth/me refuse it), then tell the
        gateways to close the sockets it has open. Signing out twice is no error."""
        _user, claims = tokens.verify(self.jwt_secret, request.token)
        await sessions.revoke(self.redis, claims)
        notice = SignoutNotice(sid=sessions.session_of(claims))
        await bus.publish(
            self.nc, subjects.gateway_notice("signout"), notice.model_dump_json().encode()
        )
        return {}
