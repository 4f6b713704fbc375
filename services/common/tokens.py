"""JWTs: auth issues them, the gateway verifies them itself (no round trip per socket)."""

import uuid
from typing import Any, Final

import jwt

from .contracts.errors import ErrorCode, ServiceError
from .contracts.models import UserRef
from .jsonutil import now_ms

ALGORITHM: Final = "HS256"
ISSUER: Final = "sharetube"


def issue(secret: str, user: UserRef, expires_s: int, session_id: str | None = None) -> str:
    now_s = now_ms() // 1000
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": user.id,
        "name": user.name,
        "adm": user.admin,
        "sid": session_id or uuid.uuid4().hex,
        "iat": now_s,
        "exp": now_s + expires_s,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str) -> tuple[UserRef, dict[str, Any]]:
    """The user a token names; `unauthorized` for a bad, expired or foreign token."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
    except jwt.PyJWTError as exc:
        raise ServiceError(ErrorCode.UNAUTHORIZED, "Invalid or expired token.") from exc
    user = UserRef(
        id=str(claims["sub"]),
        name=str(claims.get("name", "")),
        admin=bool(claims.get("adm", False)),
    )
    return user, claims
