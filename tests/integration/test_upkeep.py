"""The janitor's commands as the owning services run them, against a real PostgreSQL built by
the migrations: presence timeouts, idle rooms, retention and orphans. Each is run twice to
show it is idempotent (what two overlapping janitor leaders would do)."""

import uuid

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.auth import repository as auth_repo
from services.auth.models import User
from services.auth.upkeep import Upkeep as AuthUpkeep
from services.chat import repository as chat_repo
from services.chat.models import ChatCommand, ChatMessageRow, ChatRoom
from services.chat.upkeep import Upkeep as ChatUpkeep
from services.common import sequencer
from services.common.contracts.commands import Join
from services.common.contracts.envelope import (
    CloseIdleRooms,
    DisconnectNotice,
    PresenceSweep,
    PurgeOrphans,
    RetentionRequest,
)
from services.common.contracts.errors import ServiceError
from services.common.idempotency import CommandLog
from services.common.jsonutil import now_ms
from services.queue.models import QueueCommand, QueueEntryRow
from services.queue.upkeep import Upkeep as QueueUpkeep
from services.rooms import repository as rooms_repo
from services.rooms.models import Room, RoomAudit, RoomsCommand, RoomSession
from services.rooms.upkeep import Upkeep as RoomsUpkeep
from tests.support.rooms_service import env, members, new_room, rooms_service, user

pytestmark = pytest.mark.integration

HOUR_MS = 3600 * 1000


async def test_a_dead_gateways_sessions_go_away_then_leave(engine: AsyncEngine) -> None:
    rooms, bus = rooms_service(engine)
    upkeep = RoomsUpkeep(rooms)
    ann, bob = user("ann"), user("bob")
    code = await new_room(rooms, ann)
    # Gateway ids with LIKE's wildcards: "gw_1" must not match "gwX1"'s sessions.
    await rooms.join(env(ann, code, "gw_1:1"), Join(player=True))
    await rooms.join(env(bob, code, "gwX1:7"), Join(player=True))
    assert {"gw_1", "gwX1"} <= set((await upkeep.gateways()).gateways)

    events = bus.members_events()
    sweep = PresenceSweep(dead_gateways=["gw_1"], away_before_ms=0)
    first = await upkeep.sweep(sweep)
    assert (first.marked_away, first.removed) == (1, 0)
    assert bus.members_events() == events + 1
    listed = await members(rooms, code)
    assert listed[ann.id] | {"online": False, "away": True, "player": False} == listed[ann.id]
    assert listed[bob.id]["online"] and not listed[bob.id]["away"]
    assert "gw_1" not in (await upkeep.gateways()).gateways
    again = await upkeep.sweep(sweep)
    assert (again.marked_away, again.removed) == (0, 0), "idempotent"
    assert bus.members_events() == events + 1, "nothing changed, nothing published"

    expire = PresenceSweep(away_before_ms=now_ms() + 1)
    assert (await upkeep.sweep(expire)).removed == 1
    assert (await upkeep.sweep(expire)).removed == 0
    listed = await members(rooms, code)
    assert listed[ann.id]["online"] is False and listed[ann.id]["away"] is False  # the owner stays


async def test_a_member_back_in_time_is_not_removed(engine: AsyncEngine) -> None:
    rooms, _bus = rooms_service(engine)
    upkeep = RoomsUpkeep(rooms)
    ann, bob = user("ann"), user("bob")
    code = await new_room(rooms, ann)
    await rooms.join(env(bob, code, "gwA:1"), Join())
    await rooms.disconnect(DisconnectNotice(room=code, conn="gwA:1"))
    assert (await members(rooms, code))[bob.id]["away"]
    await rooms.join(env(bob, code, "gwB:1"), Join())  # reconnected elsewhere
    listed = await members(rooms, code)
    assert listed[bob.id]["online"] and not listed[bob.id]["away"]
    assert (await upkeep.sweep(PresenceSweep(away_before_ms=now_ms() + 1))).removed == 0
    assert (await members(rooms, code))[bob.id]["online"]


async def test_idle_rooms_close_and_their_queue_and_chat_rows_follow(engine: AsyncEngine) -> None:
    rooms, _bus = rooms_service(engine)
    upkeep = RoomsUpkeep(rooms)
    ann = user("ann")
    idle, busy, recent = [await new_room(rooms, ann) for _ in range(3)]
    await rooms.join(env(ann, busy, "gwA:1"), Join())
    long_ago = now_ms() - 48 * HOUR_MS
    async with engine.begin() as conn:
        await conn.execute(
            update(Room).where(Room.code.in_([idle, busy])).values(last_active_ms=long_ago)
        )
        await conn.execute(
            update(Room).where(Room.code.in_([idle, busy])).values(created_at_ms=long_ago)
        )
        await conn.execute(
            insert(QueueEntryRow).values(
                id=uuid.uuid4().hex,
                room=idle,
                video_id="dQw4w9WgXcQ",
                added_by=ann.id,
                added_by_name="ann",
                pos=0,
                state="queued",
                created_at_ms=long_ago,
            )
        )
        await conn.execute(insert(ChatRoom).values(room=idle, chat_v=1))
        await conn.execute(
            insert(ChatMessageRow).values(
                id=uuid.uuid4().hex,
                room=idle,
                v=1,
                user_id=ann.id,
                name="ann",
                text="hi",
                at_ms=long_ago,
            )
        )

    cutoff = now_ms() - 24 * HOUR_MS
    closed = await upkeep.close_idle(CloseIdleRooms(empty_before_ms=cutoff))
    assert idle in closed.rooms and busy not in closed.rooms and recent not in closed.rooms
    assert idle not in (await upkeep.close_idle(CloseIdleRooms(empty_before_ms=cutoff))).rooms
    async with engine.begin() as conn:
        with pytest.raises(ServiceError) as gone:
            await sequencer.bump(conn, idle)
        assert gone.value.code == "not_found"

    queue = QueueUpkeep(engine, CommandLog(QueueCommand.__table__))
    chat = ChatUpkeep(engine, CommandLog(ChatCommand.__table__))
    assert (await queue.purge_orphans(PurgeOrphans())).deleted >= 1
    assert (await chat.purge_orphans(PurgeOrphans())).deleted >= 2  # the message and its room
    assert (await queue.purge_orphans(PurgeOrphans())).deleted == 0
    assert (await chat.purge_orphans(PurgeOrphans())).deleted == 0
    async with engine.connect() as conn:
        for table in (QueueEntryRow.__table__, ChatMessageRow.__table__):
            count = select(func.count()).select_from(table).where(table.c.room == idle)
            assert (await conn.execute(count)).scalar_one() == 0
        assert await chat_repo.chat_version(conn, idle) == 0


async def test_retention_deletes_old_rows_only_in_bounded_batches(engine: AsyncEngine) -> None:
    rooms, _bus = rooms_service(engine)
    upkeep = RoomsUpkeep(rooms)
    code = await new_room(rooms, user("ann"))
    old, new = now_ms() - 100 * 24 * HOUR_MS, now_ms()
    async with engine.begin() as conn:
        for at in [old] * 5 + [new]:
            await conn.execute(
                insert(RoomAudit).values(room=code, at_ms=at, action="x", detail="{}")
            )
        for at in [old] * 3 + [new]:
            await conn.execute(
                insert(RoomsCommand).values(
                    user_id="u", request_id=uuid.uuid4().hex, command="x", reply=b"{}", at_ms=at
                )
            )
    cutoff = now_ms() - 90 * 24 * HOUR_MS
    audit = RetentionRequest(kind="audit", before_ms=cutoff, limit=2)
    assert [(await upkeep.retention(audit)).deleted for _ in range(4)] == [2, 2, 1, 0]
    commands = RetentionRequest(kind="commands", before_ms=cutoff, limit=10)
    assert (await upkeep.retention(commands)).deleted == 3
    assert (await upkeep.retention(commands)).deleted == 0
    async with engine.connect() as conn:
        left = await conn.execute(select(RoomAudit.at_ms).where(RoomAudit.room == code))
        assert [r.at_ms for r in left] == [new]
    with pytest.raises(ServiceError) as refused:
        await upkeep.retention(RetentionRequest(kind="guests", before_ms=cutoff))
    assert refused.value.code == "bad_request"


async def test_stale_guests_go_but_never_while_their_token_may_be_valid(
    engine: AsyncEngine,
) -> None:
    day = 24 * HOUR_MS
    rows = {
        "old guest": ("guest", now_ms() - 40 * day),
        "guest with a live token": ("guest", now_ms() - 3 * day),
        "old google user": ("google", now_ms() - 400 * day),
    }
    ids = {}
    async with engine.begin() as conn:
        for name, (kind, seen) in rows.items():
            ids[name] = uuid.uuid4().hex
            await auth_repo.insert_user(
                conn,
                id=ids[name],
                name=name[:40],
                kind=kind,
                email=None,
                created_at_ms=seen,
                last_seen_ms=seen,
            )
    upkeep = AuthUpkeep(engine, token_lifetime_s=14 * 24 * 3600)
    # The janitor asks for everything older than a day; auth keeps what a token may still use.
    request = RetentionRequest(kind="guests", before_ms=now_ms() - day)
    assert (await upkeep.retention(request)).deleted >= 1
    assert (await upkeep.retention(request)).deleted == 0
    async with engine.connect() as conn:
        left = {r.id for r in await conn.execute(select(User.id).where(User.id.in_(ids.values())))}
    assert left == {ids["guest with a live token"], ids["old google user"]}


async def test_away_sessions_count_nowhere_as_online(engine: AsyncEngine) -> None:
    rooms, _bus = rooms_service(engine)
    ann, bob = user("ann"), user("bob")
    code = await new_room(rooms, ann)
    await rooms.join(env(ann, code, "gwA:1"), Join(player=True))
    await rooms.join(env(bob, code, "gwA:2"), Join(player=True))
    await rooms.disconnect(DisconnectNotice(room=code, conn="gwA:2"))
    async with engine.connect() as conn:
        assert await rooms_repo.players(conn, code) == frozenset({"gwA:1"})
        assert await rooms_repo.online_users(conn, code) == 1
        stored = await conn.execute(select(RoomSession.conn).where(RoomSession.room == code))
        assert {r.conn for r in stored} == {"gwA:1", "gwA:2"}  # the away one is kept
