"""All of the rooms service's SQL."""

from typing import Any

import orjson
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.contracts.models import Member, RoomInfo, RoomSettings

from .models import Membership, Room, RoomSession
from .playback import PlaybackState

_rooms = Room.__table__
_members = Membership.__table__
_sessions = RoomSession.__table__


async def insert_room(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(_rooms.insert().values(**values))


async def code_taken(conn: AsyncConnection, code: str) -> bool:
    return (
        await conn.execute(select(_rooms.c.code).where(_rooms.c.code == code))
    ).first() is not None


async def get_room(conn: AsyncConnection, code: str) -> Any | None:
    return (await conn.execute(select(_rooms).where(_rooms.c.code == code))).first()


def room_info(row: Any) -> RoomInfo:
    return RoomInfo(code=row.code, owner_id=row.owner_id, created_at_ms=row.created_at_ms)


def settings_of(row: Any) -> RoomSettings:
    return RoomSettings(
        name=row.name,
        visibility=row.visibility,
        control_mode=row.control_mode,
        ad_sync=row.ad_sync,
        auto_advance=row.auto_advance,
    )


def playback_of(row: Any) -> PlaybackState:
    return PlaybackState(
        status=row.status,
        entry_id=row.entry_id,
        video_id=row.video_id,
        title=row.title,
        duration_ms=row.duration_ms,
        position_ms=row.position_ms,
        anchor_ms=row.anchor_ms,
        rate=row.rate,
        ready=frozenset(orjson.loads(row.ready_conns)),
        deadline_ms=row.deadline_ms,
    )


async def save_playback(conn: AsyncConnection, code: str, state: PlaybackState, v: int) -> None:
    await conn.execute(
        update(_rooms)
        .where(_rooms.c.code == code)
        .values(
            status=state.status,
            entry_id=state.entry_id,
            video_id=state.video_id,
            title=state.title,
            duration_ms=state.duration_ms,
            position_ms=state.position_ms,
            anchor_ms=state.anchor_ms,
            rate=state.rate,
            ready_conns=orjson.dumps(sorted(state.ready)).decode(),
            deadline_ms=state.deadline_ms,
            playback_v=v,
        )
    )


async def save_settings(conn: AsyncConnection, code: str, settings: RoomSettings, v: int) -> None:
    await conn.execute(
        update(_rooms).where(_rooms.c.code == code).values(**settings.model_dump(), settings_v=v)
    )


async def set_members_version(conn: AsyncConnection, code: str, v: int) -> None:
    await conn.execute(update(_rooms).where(_rooms.c.code == code).values(members_v=v))


async def get_membership(conn: AsyncConnection, room: str, user_id: str) -> Any | None:
    return (
        await conn.execute(
            select(_members).where(_members.c.room == room, _members.c.user_id == user_id)
        )
    ).first()


async def insert_membership(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(_members.insert().values(**values))


async def rename_member(conn: AsyncConnection, room: str, user_id: str, name: str) -> None:
    await conn.execute(
        update(_members)
        .where(_members.c.room == room, _members.c.user_id == user_id)
        .values(name=name)
    )


async def list_members(conn: AsyncConnection, room: str) -> list[Member]:
    """Members who are online or hold a role above member (so owners stay listed)."""
    sessions = (
        await conn.execute(
            select(_sessions.c.user_id, _sessions.c.player).where(_sessions.c.room == room)
        )
    ).all()
    online: dict[str, bool] = {}
    for s in sessions:
        online[s.user_id] = online.get(s.user_id, False) or s.player
    rows = (
        await conn.execute(
            select(_members)
            .where(_members.c.room == room, _members.c.banned.is_(False))
            .order_by(_members.c.joined_at_ms, _members.c.user_id)
        )
    ).all()
    return [
        Member(
            user_id=r.user_id,
            name=r.name,
            role=r.role,
            online=r.user_id in online,
            player=online.get(r.user_id, False),
        )
        for r in rows
        if r.user_id in online or r.role != "member"
    ]


async def add_session(
    conn: AsyncConnection, room: str, conn_id: str, user_id: str, player: bool, at_ms: int
) -> bool:
    """Record a socket in the room; False when it was already there (a repeated join)."""
    existing = (
        await conn.execute(
            select(_sessions.c.player).where(_sessions.c.room == room, _sessions.c.conn == conn_id)
        )
    ).first()
    if existing is not None:
        if existing.player != player:
            await conn.execute(
                update(_sessions)
                .where(_sessions.c.room == room, _sessions.c.conn == conn_id)
                .values(player=player)
            )
        return False
    await conn.execute(
        _sessions.insert().values(
            room=room, conn=conn_id, user_id=user_id, player=player, at_ms=at_ms
        )
    )
    return True


async def remove_sessions(
    conn: AsyncConnection, room: str, *, conn_id: str | None = None, user_id: str | None = None
) -> int:
    stmt = delete(_sessions).where(_sessions.c.room == room)
    if conn_id is not None:
        stmt = stmt.where(_sessions.c.conn == conn_id)
    if user_id is not None:
        stmt = stmt.where(_sessions.c.user_id == user_id)
    return (await conn.execute(stmt)).rowcount or 0


async def players(conn: AsyncConnection, room: str) -> frozenset[str]:
    rows = await conn.execute(
        select(_sessions.c.conn).where(_sessions.c.room == room, _sessions.c.player.is_(True))
    )
    return frozenset(r.conn for r in rows)


async def due_rooms(conn: AsyncConnection, now_ms: int, limit: int = 200) -> list[str]:
    rows = await conn.execute(
        select(_rooms.c.code)
        .where(_rooms.c.deadline_ms.is_not(None), _rooms.c.deadline_ms <= now_ms)
        .limit(limit)
    )
    return [r.code for r in rows]
