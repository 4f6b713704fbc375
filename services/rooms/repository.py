"""All of the rooms service's SQL."""

from collections.abc import Callable, Collection
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, func, literal_column, select, text, update
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common import db, sequencer
from services.common.contracts.models import (
    AuditEntry,
    Member,
    NowPlaying,
    PublicRoom,
    RoomAuditEntry,
    RoomInfo,
    RoomSettings,
)
from services.common.jsonutil import now_ms

from .models import Membership, Room, RoomAudit, RoomSession
from .playback import PlaybackState

_rooms = Room.__table__
_members = Membership.__table__
_sessions = RoomSession.__table__
_audit = RoomAudit.__table__


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
        vote_skip_ratio=row.vote_skip_ratio,
        queue_limit_per_user=row.queue_limit_per_user,
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
        ads=frozenset(orjson.loads(row.ad_conns)),
        votes=frozenset(orjson.loads(row.skip_votes)),
    )


def playback_values(state: PlaybackState, v: int) -> dict[str, Any]:
    """The rooms row's playback columns (written with `room_update`)."""
    return {
        "status": state.status,
        "entry_id": state.entry_id,
        "video_id": state.video_id,
        "title": state.title,
        "duration_ms": state.duration_ms,
        "position_ms": state.position_ms,
        "anchor_ms": state.anchor_ms,
        "rate": state.rate,
        "ready_conns": orjson.dumps(sorted(state.ready)).decode(),
        "deadline_ms": state.deadline_ms,
        "ad_conns": orjson.dumps(sorted(state.ads)).decode(),
        "skip_votes": orjson.dumps(sorted(state.votes)).decode(),
        "playback_v": v,
    }


def settings_values(settings: RoomSettings, v: int) -> dict[str, Any]:
    return {**settings.model_dump(), "settings_v": v}


def room_update(code: str, values: dict[str, Any]) -> Any:
    """One UPDATE of the room's row with every column a transaction changed."""
    return update(_rooms).where(_rooms.c.code == code).values(**values)


def _locked_room_statement(postgres: bool) -> Any:
    """`lock_room`'s read: the room's row, version, live players and one membership, with
    `code` and `user_id` as parameters."""
    seq = sequencer.RoomSequence.__table__
    code = bindparam("code")
    member = _members.alias("m")
    space = literal_column("' '")  # not a parameter: the compiled SQL names only two
    joined = (
        func.string_agg(_sessions.c.conn, space)
        if postgres
        else func.group_concat(_sessions.c.conn, space)
    )
    players = (
        select(joined)
        .where(
            _sessions.c.room == code,
            _sessions.c.player.is_(True),
            _sessions.c.away_since_ms.is_(None),
        )
        .scalar_subquery()
    )
    return (
        select(
            _rooms,
            seq.c.v.label("seq_v"),
            players.label("players"),
            member.c.name.label("m_name"),
            member.c.role.label("m_role"),
            member.c.joined_at_ms.label("m_joined_at_ms"),
            member.c.banned.label("m_banned"),
        )
        .join(seq, seq.c.room == _rooms.c.code)
        .outerjoin(
            member, (member.c.room == _rooms.c.code) & (member.c.user_id == bindparam("user_id"))
        )
        .where(_rooms.c.code == code)
    )


# On PostgreSQL the lock and the read go as psycopg's SQL, together with the transaction's
# BEGIN (db.lock_then_read): one round trip where they took three. Compiled once.
_LOCK_ROOM_SQL = "SELECT v FROM room_seq WHERE room = %(code)s FOR UPDATE"
_READ_LOCKED_ROOM_SQL = str(_locked_room_statement(True).compile(dialect=psycopg_dialect()))
_READ_LOCKED_ROOM = _locked_room_statement(False)


async def lock_room(conn: AsyncConnection, code: str, user_id: str | None) -> Any | None:
    """Take the room's lock (its sequence row), then read its row, its version (`seq_v`),
    its live player sockets (`players`, space-separated, as `players` returns them) and
    `user_id`'s membership (`m_*` columns, None when not a member); None when there is no
    such room.

    Two statements: the read takes its snapshot after the lock is held, so it sees what the
    lock's previous holder (another replica) committed. Locked and read in one statement,
    PostgreSQL re-reads only the locked row after the wait, and the room row would be stale.
    """
    params = {"code": code, "user_id": user_id}
    if conn.dialect.name == "postgresql":
        locks, rows = await db.lock_then_read(conn, _LOCK_ROOM_SQL, _READ_LOCKED_ROOM_SQL, params)
        return rows[0] if locks and rows else None
    seq = sequencer.RoomSequence.__table__
    if (await conn.execute(select(seq.c.v).where(seq.c.room == code))).first() is None:
        return None
    return (await conn.execute(_READ_LOCKED_ROOM, params)).first()


def _room_with_member_statement() -> Any:
    member = _members.alias("m")
    user_id = bindparam("user_id")
    return (
        select(
            _rooms,
            member.c.name.label("m_name"),
            member.c.role.label("m_role"),
            member.c.joined_at_ms.label("m_joined_at_ms"),
            member.c.banned.label("m_banned"),
        )
        .outerjoin(member, (member.c.room == _rooms.c.code) & (member.c.user_id == user_id))
        .where(_rooms.c.code == bindparam("code"))
    )


# Built once: every chat message and queue command asks for it (services' access checks).
_ROOM_WITH_MEMBER = _room_with_member_statement()


async def room_with_member(conn: AsyncConnection, code: str, user_id: str) -> Any | None:
    """The room's row and `user_id`'s membership (`m_*` columns, as `lock_room` reads them)
    in one statement, without the lock; None when there is no such room."""
    return (await conn.execute(_ROOM_WITH_MEMBER, {"code": code, "user_id": user_id})).first()


async def get_membership(conn: AsyncConnection, room: str, user_id: str) -> Any | None:
    return (
        await conn.execute(
            select(_members).where(_members.c.room == room, _members.c.user_id == user_id)
        )
    ).first()


async def memberships(
    conn: AsyncConnection, room: str, user_ids: Collection[str]
) -> dict[str, Any]:
    """The memberships of these users (user id -> row), in one statement; absent: none."""
    rows = await conn.execute(
        select(_members).where(_members.c.room == room, _members.c.user_id.in_(sorted(user_ids)))
    )
    return {r.user_id: r for r in rows}


async def insert_membership(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(_members.insert().values(**values))


async def insert_memberships(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """New members, in one statement."""
    if rows:
        await conn.execute(_members.insert().values(rows))


async def rename_member(conn: AsyncConnection, room: str, user_id: str, name: str) -> None:
    await conn.execute(
        update(_members)
        .where(_members.c.room == room, _members.c.user_id == user_id)
        .values(name=name)
    )


async def member_entries(
    conn: AsyncConnection, room: str, user_ids: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """Members who are online, away (their sockets dropped a moment ago) or hold a role
    above member (so owners stay listed), by (joined_at_ms, user_id); with `user_ids`, only
    those of them (a `members` event's delta reads just the users a change touched). Plain
    dicts of `Member`'s fields, unvalidated (the rows were validated on their way in): a
    `Member` built and dumped costs 5.3 µs a row against 0.1 µs for the dict."""
    sessions_q = select(_sessions.c.user_id, _sessions.c.player, _sessions.c.away_since_ms).where(
        _sessions.c.room == room
    )
    members_q = select(
        _members.c.user_id, _members.c.name, _members.c.role, _members.c.joined_at_ms
    ).where(_members.c.room == room, _members.c.banned.is_(False))
    if user_ids is not None:
        ids = sorted(set(user_ids))
        sessions_q = sessions_q.where(_sessions.c.user_id.in_(ids))
        members_q = members_q.where(_members.c.user_id.in_(ids))
    online, away = _presence(await conn.execute(sessions_q), lambda s: s.user_id)
    rows = await conn.execute(members_q.order_by(_members.c.joined_at_ms, _members.c.user_id))
    return [entry for r in rows if (entry := _listed(r, r.user_id, online, away)) is not None]


# `member_entries` in PostgreSQL, as one JSON array: the same rule (listed when online, away
# or above member; away only with no live socket), fields and order. A join's snapshot lists
# the whole room, and building it in Python cost the rooms process 10 ms of CPU at 1,000
# members (SQLAlchemy's rows, the dicts); tests/integration/test_member_list.py holds the two
# to the same answer.
_MEMBER_LIST_JSON = text(
    """
    SELECT coalesce(json_agg(json_build_object(
               'user_id', m.user_id,
               'name', m.name,
               'role', m.role,
               'online', p.online,
               'player', p.player,
               'away', p.away AND NOT p.online,
               'joined_at_ms', m.joined_at_ms
           ) ORDER BY m.joined_at_ms, m.user_id), '[]')::text
    FROM rooms_members m
    CROSS JOIN LATERAL (
        SELECT coalesce(bool_or(s.away_since_ms IS NULL), false) AS online,
               coalesce(bool_or(s.player AND s.away_since_ms IS NULL), false) AS player,
               coalesce(bool_or(s.away_since_ms IS NOT NULL), false) AS away
        FROM rooms_sessions s
        WHERE s.room = m.room AND s.user_id = m.user_id
    ) p
    WHERE m.room = :room AND NOT m.banned AND (p.online OR p.away OR m.role <> 'member')
    """
)
# Each member's sessions are found by (room, user_id) in ix_rooms_sessions_room_user, per
# member: a plan that stays linear whatever the statistics say. Aggregated by user first and
# then joined, a new room's missing statistics planned a nested loop over every session for
# every member: 297 ms at 1,000 members. And with statistics that say rooms_sessions is
# nearly empty (analysed while it was), PostgreSQL scans the whole table once per member
# instead: so the list is read with sequential scans off for the rest of its transaction
# (every statement of a room's transaction finds its rows by key).
_BY_KEYS_SQL = "SET LOCAL enable_seqscan = off"
_MEMBER_LIST_SQL = str(_MEMBER_LIST_JSON.compile(dialect=psycopg_dialect()))


async def member_list(conn: AsyncConnection, room: str) -> list[dict[str, Any]]:
    """Every listed member of the room, as `member_entries` gives them: built by PostgreSQL
    and parsed by orjson there, by `member_entries` elsewhere (SQLite). On PostgreSQL the
    SET and the list go in one round trip (psycopg's pipeline mode)."""
    if conn.dialect.name != "postgresql":
        return await member_entries(conn, room)
    _, (row,) = await db.pipelined(conn, [(_BY_KEYS_SQL, {}), (_MEMBER_LIST_SQL, {"room": room})])
    return orjson.loads(row[0])  # an aggregate: one row, '[]' for none


def _presence(sessions: Any, key: Callable[[Any], Any]) -> tuple[dict[Any, bool], set[Any]]:
    """From session rows: who has a live session (key -> whether any of them plays) and who
    has an away one (`_listed` shows away only those with no live session)."""
    online: dict[Any, bool] = {}
    away: set[Any] = set()
    for s in sessions:
        k = key(s)
        if s.away_since_ms is None:
            online[k] = online.get(k, False) or s.player
        else:
            away.add(k)
    return online, away


def _listed(r: Any, key: Any, online: dict[Any, bool], away: set[Any]) -> dict[str, Any] | None:
    """Membership row `r` as listed (`Member`'s fields), given who is online (and playing)
    and who is away (`key` indexes both), or None when it is not listed."""
    is_online = key in online
    if not is_online and key not in away and r.role == "member":
        return None
    return {
        "user_id": r.user_id,
        "name": r.name,
        "role": r.role,
        "online": is_online,
        "player": online.get(key, False),
        "away": not is_online and key in away,
        "joined_at_ms": r.joined_at_ms,
    }


async def add_sessions(
    conn: AsyncConnection, room: str, sockets: list[tuple[str, str, bool]], at_ms: int
) -> list[str]:
    """Record sockets (conn, user id, player) in the room: the conns that were not there yet.
    A socket already there (a repeated join) keeps its session, with the `player` flag given.
    The caller marks the room active (`RoomTx.active_at`, written with the room's row)."""
    if not sockets:
        return []
    conns = [conn_id for conn_id, _, _ in sockets]
    existing = {
        r.conn: r.player
        for r in await conn.execute(
            select(_sessions.c.conn, _sessions.c.player).where(
                _sessions.c.room == room, _sessions.c.conn.in_(conns)
            )
        )
    }
    for conn_id, _, player in sockets:
        if conn_id in existing and existing[conn_id] != player:
            await conn.execute(
                update(_sessions)
                .where(_sessions.c.room == room, _sessions.c.conn == conn_id)
                .values(player=player)
            )
    new = [
        {"room": room, "conn": conn_id, "user_id": user_id, "player": player, "at_ms": at_ms}
        for conn_id, user_id, player in sockets
        if conn_id not in existing
    ]
    if new:
        await conn.execute(_sessions.insert().values(new))
    return [row["conn"] for row in new]


# A join's writes on PostgreSQL (`join_sockets`), as psycopg's SQL over arrays.
_INSERT_MEMBERS_SQL = """
INSERT INTO rooms_members (room, user_id, name, role, joined_at_ms, banned)
SELECT %(room)s, t.user_id, t.name, t.role, %(at_ms)s, false
FROM unnest(%(users)s::text[], %(names)s::text[], %(roles)s::text[]) AS t(user_id, name, role)
"""
_SESSIONS_OF_SQL = (
    "SELECT conn, player FROM rooms_sessions WHERE room = %(room)s AND conn = ANY(%(conns)s)"
)
_SET_PLAYERS_SQL = """
UPDATE rooms_sessions s SET player = t.player
FROM unnest(%(conns)s::text[], %(players)s::bool[]) AS t(conn, player)
WHERE s.room = %(room)s AND s.conn = t.conn
"""
_INSERT_SESSIONS_SQL = """
INSERT INTO rooms_sessions (conn, room, user_id, player, at_ms)
SELECT t.conn, %(room)s, t.user_id, t.player, %(at_ms)s
FROM unnest(%(conns)s::text[], %(users)s::text[], %(players)s::bool[]) AS t(conn, user_id, player)
"""
_CLEAR_AWAY_SQL = """
DELETE FROM rooms_sessions
WHERE room = %(room)s AND user_id = ANY(%(users)s) AND away_since_ms IS NOT NULL
RETURNING user_id
"""


async def join_sockets(
    conn: AsyncConnection,
    room: str,
    new_members: list[dict[str, Any]],
    sockets: list[tuple[str, str, bool]],
    user_ids: list[str],
    at_ms: int,
) -> tuple[list[str], list[str]]:
    """A join's writes: `insert_memberships(new_members)`, `add_sessions(sockets)` and
    `clear_away(user_ids)`, in that order; (the conns added, the user ids back). On
    PostgreSQL the same statements in two round trips instead of four: the new members with
    the read of the sockets' sessions, then the sessions' writes."""
    if conn.dialect.name != "postgresql":
        await insert_memberships(conn, new_members)
        added = await add_sessions(conn, room, sockets, at_ms)
        return added, await clear_away(conn, room, user_ids)
    first: list[tuple[str, dict[str, Any]]] = []
    if new_members:
        columns = {
            "users": [m["user_id"] for m in new_members],
            "names": [m["name"] for m in new_members],
            "roles": [m["role"] for m in new_members],
        }
        first.append((_INSERT_MEMBERS_SQL, {"room": room, "at_ms": at_ms, **columns}))
    conns = [conn_id for conn_id, _, _ in sockets]
    first.append((_SESSIONS_OF_SQL, {"room": room, "conns": conns}))
    existing = {r.conn: r.player for r in (await db.pipelined(conn, first))[-1]}
    # A socket already there (a repeated join) keeps its session, with the `player` given.
    changed = [(c, p) for c, _, p in sockets if c in existing and existing[c] != p]
    new = [(c, u, p) for c, u, p in sockets if c not in existing]
    second: list[tuple[str, dict[str, Any]]] = []
    if changed:
        players = {"conns": [c for c, _ in changed], "players": [p for _, p in changed]}
        second.append((_SET_PLAYERS_SQL, {"room": room, **players}))
    if new:
        columns = {
            "conns": [c for c, _, _ in new],
            "users": [u for _, u, _ in new],
            "players": [p for _, _, p in new],
        }
        second.append((_INSERT_SESSIONS_SQL, {"room": room, "at_ms": at_ms, **columns}))
    second.append((_CLEAR_AWAY_SQL, {"room": room, "users": sorted(user_ids)}))
    back = (await db.pipelined(conn, second))[-1]
    return [c for c, _, _ in new], [r.user_id for r in back]


async def _touch(conn: AsyncConnection, room: str, at_ms: int) -> None:
    """A socket came or went: the room is not idle (see `idle_rooms`)."""
    await conn.execute(update(_rooms).where(_rooms.c.code == room).values(last_active_ms=at_ms))


async def remove_sessions(
    conn: AsyncConnection, room: str, *, conn_id: str | None = None, user_id: str | None = None
) -> list[str]:
    """Delete the room's sessions of this socket and / or user: the user id of each one
    removed (one per session, so an id may repeat)."""
    stmt = delete(_sessions).where(_sessions.c.room == room)
    if conn_id is not None:
        stmt = stmt.where(_sessions.c.conn == conn_id)
    if user_id is not None:
        stmt = stmt.where(_sessions.c.user_id == user_id)
    removed = await _user_ids(conn, stmt)
    if removed:
        await _touch(conn, room, now_ms())
    return removed


async def _user_ids(conn: AsyncConnection, stmt: Any) -> list[str]:
    """Run an UPDATE or DELETE of sessions; the user id of every row it changed (RETURNING:
    PostgreSQL, and SQLite since 3.35)."""
    return list((await conn.execute(stmt.returning(_sessions.c.user_id))).scalars())


async def players(conn: AsyncConnection, room: str) -> frozenset[str]:
    """Live player sockets: an away one holds up no start."""
    rows = await conn.execute(
        select(_sessions.c.conn).where(
            _sessions.c.room == room,
            _sessions.c.player.is_(True),
            _sessions.c.away_since_ms.is_(None),
        )
    )
    return frozenset(r.conn for r in rows)


# -- presence -----------------------------------------------------------------------------


async def mark_away(conn: AsyncConnection, room: str, conn_ids: list[str], at_ms: int) -> list[str]:
    """These sockets are gone but their members keep their place for now: the user id of
    each session marked (one per session)."""
    if not conn_ids:
        return []
    return await _user_ids(
        conn,
        update(_sessions)
        .where(
            _sessions.c.room == room,
            _sessions.c.conn.in_(conn_ids),
            _sessions.c.away_since_ms.is_(None),
        )
        .values(away_since_ms=at_ms),
    )


async def clear_away(conn: AsyncConnection, room: str, user_ids: list[str]) -> list[str]:
    """These members are back on new sockets: their away sessions are superseded. The user
    id of each session deleted (one per session)."""
    if not user_ids:
        return []
    return await _user_ids(
        conn,
        delete(_sessions).where(
            _sessions.c.room == room,
            _sessions.c.user_id.in_(sorted(user_ids)),
            _sessions.c.away_since_ms.is_not(None),
        ),
    )


async def live_session_conns(conn: AsyncConnection) -> list[str]:
    """Connection ids of every live session (the gateway is their prefix)."""
    rows = await conn.execute(
        select(_sessions.c.conn).where(_sessions.c.away_since_ms.is_(None)).distinct()
    )
    return [r.conn for r in rows]


async def live_sessions_of_gateway(
    conn: AsyncConnection, gateway_id: str, limit: int
) -> list[tuple[str, str]]:
    """(room, conn) of the live sessions a gateway holds; `conn` is `<gateway id>:<n>`."""
    prefix = gateway_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = await conn.execute(
        select(_sessions.c.room, _sessions.c.conn)
        .where(
            _sessions.c.conn.like(prefix + ":%", escape="\\"),
            _sessions.c.away_since_ms.is_(None),
        )
        .limit(limit)
    )
    return [(r.room, r.conn) for r in rows]


async def expired_away(conn: AsyncConnection, before_ms: int, limit: int) -> list[tuple[str, str]]:
    rows = await conn.execute(
        select(_sessions.c.room, _sessions.c.conn)
        .where(_sessions.c.away_since_ms < before_ms)
        .order_by(_sessions.c.away_since_ms)
        .limit(limit)
    )
    return [(r.room, r.conn) for r in rows]


async def remove_expired_away(
    conn: AsyncConnection, room: str, conn_ids: list[str], before_ms: int
) -> list[str]:
    """Remove these away sessions if they are still away since before `before_ms` (a
    concurrent sweep or a re-join may have settled them already): the user id of each one
    removed."""
    removed = await _user_ids(
        conn,
        delete(_sessions).where(
            _sessions.c.room == room,
            _sessions.c.conn.in_(conn_ids),
            _sessions.c.away_since_ms < before_ms,
        ),
    )
    if removed:
        await _touch(conn, room, now_ms())
    return removed


# -- room lifecycle -----------------------------------------------------------------------


def _idle_since() -> Any:
    return func.coalesce(_rooms.c.last_active_ms, _rooms.c.created_at_ms)


async def idle_rooms(conn: AsyncConnection, empty_before_ms: int, limit: int) -> list[str]:
    """Rooms without any session (live or away) whose last socket came or went (or that were
    created) before `empty_before_ms`."""
    has_session = select(_sessions.c.room).where(_sessions.c.room == _rooms.c.code).exists()
    rows = await conn.execute(
        select(_rooms.c.code)
        .where(_idle_since() < empty_before_ms, ~has_session)
        .order_by(_idle_since())
        .limit(limit)
    )
    return [r.code for r in rows]


async def is_idle(conn: AsyncConnection, code: str, empty_before_ms: int) -> bool:
    """`idle_rooms`' test for one room, under its lock."""
    row = (
        await conn.execute(select(_idle_since().label("since")).where(_rooms.c.code == code))
    ).first()
    if row is None or row.since >= empty_before_ms:
        return False
    sessions = await conn.execute(select(_sessions.c.conn).where(_sessions.c.room == code))
    return sessions.first() is None


async def delete_room(conn: AsyncConnection, code: str) -> None:
    """Everything rooms keeps about a room, and its event sequence: queue and chat rows of a
    room without a sequence are orphans, purged by their own services."""
    for table, column in (
        (_sessions, _sessions.c.room),
        (_members, _members.c.room),
        (_audit, _audit.c.room),
        (_rooms, _rooms.c.code),
    ):
        await conn.execute(delete(table).where(column == code))
    await sequencer.delete(conn, code)


async def purge_audit(conn: AsyncConnection, before_ms: int, limit: int) -> int:
    oldest = (
        select(_audit.c.id).where(_audit.c.at_ms < before_ms).order_by(_audit.c.id).limit(limit)
    )
    result = await conn.execute(delete(_audit).where(_audit.c.id.in_(oldest)))
    return result.rowcount or 0


async def due_rooms(conn: AsyncConnection, now_ms: int, limit: int = 200) -> list[str]:
    rows = await conn.execute(
        select(_rooms.c.code)
        .where(_rooms.c.deadline_ms.is_not(None), _rooms.c.deadline_ms <= now_ms)
        .limit(limit)
    )
    return [r.code for r in rows]


async def sessions_of(conn: AsyncConnection, room: str, user_id: str) -> list[str]:
    rows = await conn.execute(
        select(_sessions.c.conn).where(_sessions.c.room == room, _sessions.c.user_id == user_id)
    )
    return sorted(r.conn for r in rows)


async def online_users(conn: AsyncConnection, room: str) -> int:
    stmt = select(func.count(func.distinct(_sessions.c.user_id))).where(
        _sessions.c.room == room, _sessions.c.away_since_ms.is_(None)
    )
    return int((await conn.execute(stmt)).scalar_one())


# -- roles and moderation -----------------------------------------------------------------


async def set_owner(conn: AsyncConnection, code: str, user_id: str) -> None:
    await conn.execute(update(_rooms).where(_rooms.c.code == code).values(owner_id=user_id))


async def set_role(conn: AsyncConnection, room: str, user_id: str, role: str) -> None:
    await conn.execute(
        update(_members)
        .where(_members.c.room == room, _members.c.user_id == user_id)
        .values(role=role)
    )


async def set_banned(conn: AsyncConnection, room: str, user_id: str, banned: bool) -> None:
    """A ban also takes any role away; lifting it leaves a plain member who may rejoin."""
    await conn.execute(
        update(_members)
        .where(_members.c.room == room, _members.c.user_id == user_id)
        .values(banned=banned, role="member")
    )


async def delete_membership(conn: AsyncConnection, room: str, user_id: str) -> None:
    await conn.execute(
        delete(_members).where(_members.c.room == room, _members.c.user_id == user_id)
    )


# -- audit --------------------------------------------------------------------------------


def audit_insert(**values: Any) -> Any:
    return _audit.insert().values(**values)


async def list_audit(
    conn: AsyncConnection, room: str, limit: int, before_id: int | None = None
) -> list[AuditEntry]:
    stmt = select(_audit).where(_audit.c.room == room)
    if before_id is not None:
        stmt = stmt.where(_audit.c.id < before_id)
    rows = await conn.execute(stmt.order_by(_audit.c.id.desc()).limit(limit))
    return [
        AuditEntry(
            id=r.id,
            at_ms=r.at_ms,
            action=r.action,
            user_id=r.user_id,
            name=r.name,
            target_id=r.target_id,
            detail=orjson.loads(r.detail),
        )
        for r in rows
    ]


# -- directory and figures ----------------------------------------------------------------


async def public_rooms(conn: AsyncConnection, limit: int, offset: int) -> list[PublicRoom]:
    """Public rooms with someone online, the busiest first."""
    online = func.count(func.distinct(_sessions.c.user_id)).label("online")
    rows = await conn.execute(
        select(
            _rooms.c.code,
            _rooms.c.name,
            _rooms.c.status,
            _rooms.c.video_id,
            _rooms.c.title,
            online,
        )
        .join(_sessions, _sessions.c.room == _rooms.c.code)
        .where(_rooms.c.visibility == "public", _sessions.c.away_since_ms.is_(None))
        .group_by(_rooms.c.code, _rooms.c.name, _rooms.c.status, _rooms.c.video_id, _rooms.c.title)
        .order_by(online.desc(), _rooms.c.code)
        .limit(limit)
        .offset(offset)
    )
    return [
        PublicRoom(
            code=r.code,
            name=r.name,
            members_online=r.online,
            now_playing=NowPlaying(status=r.status, video_id=r.video_id, title=r.title),
        )
        for r in rows
    ]


async def figures(conn: AsyncConnection) -> dict[str, float]:
    """Totals for GET /api/stats: rooms, rooms with someone online, users online, sockets."""
    rooms_total = (await conn.execute(select(func.count()).select_from(_rooms))).scalar_one()
    is_live = _sessions.c.away_since_ms.is_(None)
    live = (
        await conn.execute(select(func.count(func.distinct(_sessions.c.room))).where(is_live))
    ).scalar_one()
    users = (
        await conn.execute(select(func.count(func.distinct(_sessions.c.user_id))).where(is_live))
    ).scalar_one()
    sessions = (
        await conn.execute(select(func.count()).select_from(_sessions).where(is_live))
    ).scalar_one()
    return {
        "rooms": float(live),
        "rooms_total": float(rooms_total),
        "users_online": float(users),
        "sessions": float(sessions),
    }


# -- the admin dashboard ------------------------------------------------------------------


async def live_rooms(conn: AsyncConnection, limit: int) -> list[tuple[Any, int]]:
    """Every room with someone online, public or private, the busiest first: (row, online)."""
    online = func.count(func.distinct(_sessions.c.user_id)).label("online")
    busiest = (
        select(_sessions.c.room, online)
        .where(_sessions.c.away_since_ms.is_(None))
        .group_by(_sessions.c.room)
        .order_by(online.desc(), _sessions.c.room)
        .limit(limit)
        .subquery()
    )
    rows = await conn.execute(
        select(_rooms, busiest.c.online)
        .join(busiest, busiest.c.room == _rooms.c.code)
        .order_by(busiest.c.online.desc(), _rooms.c.code)
    )
    return [(r, int(r.online)) for r in rows]


async def members_of(conn: AsyncConnection, rooms: list[str]) -> dict[str, list[Member]]:
    """`member_entries` for many rooms in two queries, as `Member`s."""
    if not rooms:
        return {}
    sessions = await conn.execute(
        select(
            _sessions.c.room, _sessions.c.user_id, _sessions.c.player, _sessions.c.away_since_ms
        ).where(_sessions.c.room.in_(rooms))
    )
    online, away = _presence(sessions, lambda s: (s.room, s.user_id))
    rows = await conn.execute(
        select(_members)
        .where(_members.c.room.in_(rooms), _members.c.banned.is_(False))
        .order_by(_members.c.room, _members.c.joined_at_ms, _members.c.user_id)
    )
    found: dict[str, list[Member]] = {code: [] for code in rooms}
    for r in rows:
        entry = _listed(r, (r.room, r.user_id), online, away)
        if entry is not None:
            found[r.room].append(Member(**entry))
    return found


async def recent_audit(conn: AsyncConnection, limit: int) -> list[RoomAuditEntry]:
    """The newest audit entries of every room."""
    if limit <= 0:
        return []
    rows = await conn.execute(select(_audit).order_by(_audit.c.id.desc()).limit(limit))
    return [
        RoomAuditEntry(
            id=r.id,
            room=r.room,
            at_ms=r.at_ms,
            action=r.action,
            user_id=r.user_id,
            name=r.name,
            target_id=r.target_id,
            detail=orjson.loads(r.detail),
        )
        for r in rows
    ]
