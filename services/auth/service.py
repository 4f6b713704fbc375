"""Guest sign-in and who-am-I; tokens are signed here and verified by every gateway."""

import unicodedata
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import tokens
from services.common.contracts.envelope import CommandEnvelope, GuestRequest, TokenReply
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
    def __init__(self, engine: AsyncEngine, jwt_secret: str, expires_s: int) -> None:
        self.engine = engine
        self.jwt_secret = jwt_secret
        self.expires_s = expires_s

    async def guest(self, request: GuestRequest) -> TokenReply:
        now = now_ms()
        user = UserRef(id=uuid.uuid4().hex, name=clean_name(request.name))
        async with self.engine.begin() as conn:
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
            "admin": env.user.admin,
            "created_at_ms": row.created_at_ms,
        }
