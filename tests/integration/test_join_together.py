"""Joins of one room that wait for its lock go in together (services/rooms/joins.py): one
transaction, one `members` event and one snapshot for all of them, each join still authorised
on its own, and never ahead of another command of the room that arrived before it."""

import asyncio
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.contracts.commands import BanChange, Join
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import UserRef
from services.common.jsonutil import now_ms
from services.rooms import joins
from services.rooms import repository as rooms_repo
from services.rooms.moderation import Moderation
from services.rooms.service import RoomsService
from tests.support.rooms_service import (
    env,
    members,
    new_room,
    rooms_service,
    user,
    waiting_in_lines,
)

pytestmark = pytest.mark.integration


async def _join_while_locked(
    rooms: RoomsService, code: str, joins: list[tuple[UserRef, str]]
) -> list[Any]:
    """Start every join while the room's lock is held, then let them go: they wait together."""
    async with rooms._locks.hold(code):
        tasks = [
            asyncio.create_task(rooms.join(env(who, code, conn=conn), Join()))
            for who, conn in joins
        ]
        await waiting_in_lines(rooms, code, len(tasks))
    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_joins_that_wait_together_share_one_transaction_event_and_snapshot(
    engine: AsyncEngine,
) -> None:
    rooms, bus = rooms_service(engine)
    owner = user("owner")
    code = await new_room(rooms, owner)
    guests = [user(f"guest {i}") for i in range(5)]
    before = bus.members_events()

    snapshots = await _join_while_locked(rooms, code, [(g, f"c{i}") for i, g in enumerate(guests)])

    assert bus.members_events() - before == 1  # one at a time: 5
    for snapshot in snapshots:
        assert {m["user_id"] for m in snapshot["members"]} >= {g.id for g in guests}
    assert len({s["seq"] for s in snapshots}) == 1
    listed = await members(rooms, code)
    assert all(listed[g.id]["online"] for g in guests)
    await rooms.aclose()


async def test_a_refused_join_among_others_is_refused_alone(engine: AsyncEngine) -> None:
    rooms, _bus = rooms_service(engine)
    owner, banned, guest = user("owner"), user("banned"), user("guest")
    code = await new_room(rooms, owner)
    await rooms.join(env(banned, code, conn="b0"), Join())
    await Moderation(rooms).ban(env(owner, code), BanChange(user_id=banned.id))

    banned_join, guest_join = await _join_while_locked(rooms, code, [(banned, "b1"), (guest, "g1")])

    assert isinstance(banned_join, ServiceError) and banned_join.code is ErrorCode.FORBIDDEN
    assert guest.id in {m["user_id"] for m in guest_join["members"]}
    assert banned.id not in {m["user_id"] for m in guest_join["members"]}
    await rooms.aclose()


async def test_a_join_after_a_leave_of_the_same_socket_is_applied_after_it(
    engine: AsyncEngine,
) -> None:
    """Another command of the room ends the line: a join that arrived after a `leave` does not
    go in with an earlier join, ahead of the leave (which would then remove its session)."""
    rooms, _bus = rooms_service(engine)
    owner, early, rejoining = user("owner"), user("early"), user("rejoining")
    code = await new_room(rooms, owner)
    await rooms.join(env(rejoining, code, conn="r1"), Join())

    async with rooms._locks.hold(code):
        first = asyncio.create_task(rooms.join(env(early, code, conn="e1"), Join()))
        await waiting_in_lines(rooms, code, 1)
        leave = asyncio.create_task(rooms.leave(env(rejoining, code, conn="r1"), None))
        await asyncio.sleep(0.01)  # the leave waits for the lock too
        again = asyncio.create_task(rooms.join(env(rejoining, code, conn="r1"), Join()))
        await waiting_in_lines(rooms, code, 2)
    await asyncio.gather(first, leave, again)

    async with rooms.engine.connect() as conn:
        sessions = await rooms_repo.sessions_of(conn, code, rejoining.id)
    assert sessions == ["r1"]
    assert (await members(rooms, code))[rejoining.id]["online"]
    await rooms.aclose()


async def test_one_user_on_two_sockets_in_one_go_is_one_member_with_two_sessions(
    engine: AsyncEngine,
) -> None:
    rooms, bus = rooms_service(engine)
    owner, guest = user("owner"), user("guest")
    code = await new_room(rooms, owner)
    before = bus.members_events()

    tab, phone = await _join_while_locked(rooms, code, [(guest, "tab"), (guest, "phone")])

    assert [m["user_id"] for m in tab["members"]].count(guest.id) == 1
    assert tab == phone
    async with rooms.engine.connect() as conn:
        assert sorted(await rooms_repo.sessions_of(conn, code, guest.id)) == ["phone", "tab"]
    assert bus.members_events() - before == 1
    await rooms.aclose()


async def test_joins_that_fail_together_go_again_alone(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    rooms, _bus = rooms_service(engine)
    owner = user("owner")
    code = await new_room(rooms, owner)
    guests = [user(f"guest {i}") for i in range(3)]
    insert = rooms_repo.insert_memberships

    async def fails_for_many(conn: Any, rows: list[dict[str, Any]]) -> None:
        if len(rows) > 1:
            raise RuntimeError("a statement that fails for a group")
        await insert(conn, rows)

    monkeypatch.setattr(rooms_repo, "insert_memberships", fails_for_many)
    joined = await _join_while_locked(rooms, code, [(g, f"c{i}") for i, g in enumerate(guests)])

    assert all(isinstance(snapshot, dict) for snapshot in joined), joined
    assert {g.id for g in guests} <= set(await members(rooms, code))
    await rooms.aclose()


async def test_a_join_whose_caller_gave_up_before_its_turn_is_not_applied(
    engine: AsyncEngine,
) -> None:
    rooms, _bus = rooms_service(engine)
    owner, stays, leaves = user("owner"), user("stays"), user("gives up")
    code = await new_room(rooms, owner)

    async with rooms._locks.hold(code):
        kept = asyncio.create_task(rooms.join(env(stays, code, conn="s1"), Join()))
        given_up = asyncio.create_task(rooms.join(env(leaves, code, conn="l1"), Join()))
        await waiting_in_lines(rooms, code, 2)
        given_up.cancel()
        await asyncio.gather(given_up, return_exceptions=True)
    await kept

    listed = await members(rooms, code)
    assert stays.id in listed and leaves.id not in listed
    await rooms.aclose()


async def test_a_join_marks_its_room_active(engine: AsyncEngine) -> None:
    """The janitor closes rooms idle since `last_active_ms`; a new socket resets it."""
    rooms, _bus = rooms_service(engine)
    owner, guest = user("owner"), user("guest")
    code = await new_room(rooms, owner)
    async with engine.begin() as conn:
        await conn.execute(rooms_repo.room_update(code, {"last_active_ms": 1}))
    before = now_ms()

    await rooms.join(env(guest, code, conn="g1"), Join())

    async with engine.connect() as conn:
        assert (await rooms_repo.get_room(conn, code)).last_active_ms >= before
    await rooms.aclose()


async def _join_apart(rooms: RoomsService, code: str, count: int, apart_s: float) -> int:
    """`count` guests join `apart_s` from one another, the lock free all along: how many
    `members` events their joins made."""
    bus = rooms.nc
    before = bus.members_events()  # type: ignore[attr-defined]
    tasks = []
    for i in range(count):
        who = user(f"late {i}")
        tasks.append(asyncio.create_task(rooms.join(env(who, code, conn=f"late{i}"), Join())))
        await asyncio.sleep(apart_s)
    await asyncio.gather(*tasks)
    return bus.members_events() - before  # type: ignore[attr-defined]


@pytest.mark.parametrize("big", [True, False])
async def test_joins_close_together_into_a_big_room_linger_into_one_event(
    engine: AsyncEngine, big: bool
) -> None:
    """Joins 20 ms apart find the lock free: each would go alone, with its own `members`
    event to every member. Into a room this replica last saw big, each waits in its line
    first (joins.Lingering), and those behind it go in with it."""
    rooms, _bus = rooms_service(engine)
    rooms.lingering = joins.Lingering(from_members=3 if big else 1_000, linger_s=0.5)
    owner = user("owner")
    code = await new_room(rooms, owner)
    for i, who in enumerate([owner, user("ann"), user("bob")]):
        await rooms.join(env(who, code, conn=f"c{i}"), Join())  # the room has 3 members
    events = await _join_apart(rooms, code, count=5, apart_s=0.02)
    if big:
        assert events == 1
    else:
        assert events > 1  # 5 when each join has the lock to itself
    assert len(await members(rooms, code)) == 8
    await rooms.aclose()
