"""All of the auth service's SQL."""

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .models import User

_users = User.__table__


async def insert_user(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(_users.insert().values(**values))


async def get_user(conn: AsyncConnection, user_id: str) -> Any | None:
    return (await conn.execute(select(_users).where(_users.c.id == user_id))).first()


async def get_by_google_sub(conn: AsyncConnection, sub: str) -> Any | None:
    return (await conn.execute(select(_users).where(_users.c.google_sub == sub))).first()


async def get_by_email(conn: AsyncConnection, email: str) -> Any | None:
    return (await conn.execute(select(_users).where(_users.c.email == email))).first()


async def update_user(conn: AsyncConnection, user_id: str, **values: Any) -> None:
    await conn.execute(update(_users).where(_users.c.id == user_id).values(**values))


async def purge_guests(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    """Guest users last seen before `before_ms`; signed-in (Google) users are never purged."""
    oldest = (
        select(_users.c.id)
        .where(_users.c.kind == "guest", _users.c.last_seen_ms < before_ms)
        .order_by(_users.c.last_seen_ms)
        .limit(limit)
    )
    result = await conn.execute(delete(_users).where(_users.c.id.in_(oldest)))
    return result.rowcount or 0
