"""All of the auth service's SQL."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .models import User

_users = User.__table__


async def insert_user(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(_users.insert().values(**values))


async def get_user(conn: AsyncConnection, user_id: str) -> Any | None:
    return (await conn.execute(select(_users).where(_users.c.id == user_id))).first()
