"""The per-room event sequence: one row per room, shared by every service that changes it.

Each room-scoped change bumps the row inside the same transaction as the change itself. That
gives every event a per-room `v` that only grows, and its row lock serialises concurrent
commands on one room across all replicas and services (DESIGN.md: "per-room serialisation").
"""

from typing import Any

from sqlalchemy import BigInteger, String, select, update
from sqlalchemy import delete as _delete
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import Mapped, mapped_column

from .contracts.errors import ErrorCode, ServiceError
from .db import Base


class RoomSequence(Base):
    __tablename__ = "room_seq"

    room: Mapped[str] = mapped_column(String(16), primary_key=True)
    v: Mapped[int] = mapped_column(BigInteger, default=0)


async def create(conn: AsyncConnection, room: str) -> None:
    await conn.execute(RoomSequence.__table__.insert().values(room=room, v=0))


async def bump(conn: AsyncConnection, room: str) -> int:
    """Take the room's lock and the next version; `not_found` when there is no such room."""
    result = await conn.execute(
        update(RoomSequence)
        .where(RoomSequence.room == room)
        .values(v=RoomSequence.v + 1)
        .returning(RoomSequence.v)
    )
    v = result.scalar_one_or_none()
    if v is None:
        raise ServiceError(ErrorCode.NOT_FOUND, "No such room.")
    return int(v)


async def lock(conn: AsyncConnection, room: str) -> int:
    """Take the room's lock without a new version (for reads that must see a settled room)."""
    stmt = select(RoomSequence.v).where(RoomSequence.room == room)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    v = (await conn.execute(stmt)).scalar_one_or_none()
    if v is None:
        raise ServiceError(ErrorCode.NOT_FOUND, "No such room.")
    return int(v)


async def current(conn: AsyncConnection, room: str) -> int | None:
    v = (await conn.execute(select(RoomSequence.v).where(RoomSequence.room == room))).scalar()
    return None if v is None else int(v)


async def versions(conn: AsyncConnection, rooms: list[str]) -> dict[str, int]:
    """The committed version of each room that exists, without taking its lock."""
    result = await conn.execute(
        select(RoomSequence.room, RoomSequence.v).where(RoomSequence.room.in_(rooms))
    )
    return {room: int(v) for room, v in result}


def advance_statement(room: str, v: int) -> Any:
    """Store the room's new version after a locked change that produced events up to v."""
    return update(RoomSequence).where(RoomSequence.room == room).values(v=v)


async def advance_to(conn: AsyncConnection, room: str, v: int) -> None:
    await conn.execute(advance_statement(room, v))


async def delete(conn: AsyncConnection, room: str) -> None:
    """The room is closed (rooms deletes it under its lock): commands on it get `not_found`,
    and the other services' rows for it become orphans they purge (see `orphan_rooms`)."""
    await conn.execute(_delete(RoomSequence).where(RoomSequence.room == room))


def orphan_rooms(room_column: Any) -> Any:
    """A condition on another table's room column: that room has no sequence any more."""
    return ~select(RoomSequence.room).where(RoomSequence.room == room_column).exists()
