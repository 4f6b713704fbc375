"""`members` events carry deltas (`MembersDelta`): a change reads and sends only the users it
touched, so a join into a room of N members costs one entry, not N; and the list before the
change merged with its event equals the list after it, for every kind of change, on
PostgreSQL and on SQLite (where the sessions' user ids come back through RETURNING too)."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import db
from services.common.contracts import events
from services.common.contracts.commands import BanChange, Join, RoleChange, TargetUser
from services.common.contracts.envelope import DisconnectNotice, PresenceSweep
from services.common.contracts.models import MembersDelta, UserRef
from services.common.jsonutil import now_ms
from services.rooms.moderation import Moderation
from services.rooms.service import RoomsService
from services.rooms.transaction import RoomTx
from services.rooms.upkeep import Upkeep
from tests.support.client import reduce_members
from tests.support.rooms_service import Bus, env, new_room, rooms_service, user
from tests.support.system import migrate

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(params=["postgresql", "sqlite"])
async def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "postgresql":
        url = request.getfixturevalue("upkeep_db_url")  # tests/integration/conftest.py
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'rooms.db'}"
        migrate(url)
    engine = db.create_engine(url, pool_size=4)
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture
async def rooms_bus(any_engine: AsyncEngine) -> AsyncIterator[tuple[RoomsService, Bus]]:
    """Rooms on either database, stopped before its engine goes (its notices' outbox rows
    are let go in the background)."""
    rooms, bus = rooms_service(any_engine)
    yield rooms, bus
    await rooms.aclose()


def members_events(bus: Bus, code: str, since: int = 0) -> list[dict[str, Any]]:
    subject = events.subject_for("members", code)
    return [orjson.loads(p) for s, p in bus.published[since:] if s == subject]


async def listed(rooms: RoomsService, code: str) -> list[dict[str, Any]]:
    """The room's list as a snapshot carries it."""
    async with rooms.engine.begin() as conn:
        return (await (await RoomTx.open(conn, code)).snapshot_part())["members"]


async def test_a_join_into_a_big_room_sends_one_entry(
    rooms_bus: tuple[RoomsService, Bus],
) -> None:
    rooms, bus = rooms_bus
    owner = user("owner")
    code = await new_room(rooms, owner)
    gw = f"gw{uuid.uuid4().hex[:8]}"
    await rooms.join(env(owner, code, f"{gw}:0"), Join(player=True))
    sizes: dict[int, int] = {}
    for n in range(1, 61):
        before = len(bus.published)
        await rooms.join(env(user(f"m{n:03}"), code, f"{gw}:{n}"), Join())
        (event,) = members_events(bus, code, before)
        delta = MembersDelta.model_validate(event["data"])
        assert [m.name for m in delta.changed] == [f"m{n:03}"] and delta.gone == []
        sizes[n] = len(orjson.dumps(event))
    assert len(await listed(rooms, code)) == 61
    # The same bytes for the 2nd member as for the 61st (but for the version's digits).
    assert abs(sizes[60] - sizes[1]) <= 2, sizes


async def test_every_change_merged_into_the_list_gives_the_list_after_it(
    rooms_bus: tuple[RoomsService, Bus],
) -> None:
    rooms, bus = rooms_bus
    moderation, upkeep = Moderation(rooms), Upkeep(rooms)
    owner, ann, bob, cid, dan, eve = (user(n) for n in ("owner", "ann", "bob", "cid", "dan", "eve"))
    code = await new_room(rooms, owner)
    # Gateways of this test alone: the sweeps see every room in the database.
    gwa, gwb = (f"gw{uuid.uuid4().hex[:8]}" for _ in "ab")

    def join(who: UserRef, conn: str, player: bool = False) -> Awaitable[Any]:
        return rooms.join(env(who, code, conn), Join(player=player))

    def leave(who: UserRef, conn: str) -> Awaitable[Any]:
        return rooms.leave(env(who, code, conn), {})

    def by(who: UserRef, conn: str) -> Any:
        return env(who, code, conn)

    def sweep(**request: Any) -> Awaitable[Any]:
        return upkeep.sweep(PresenceSweep(**request))

    steps: list[tuple[str, Callable[[], Awaitable[Any]], dict[str, int]]] = [
        ("owner joins", lambda: join(owner, f"{gwa}:0", True), {"changed": 1}),
        ("ann joins", lambda: join(ann, f"{gwa}:1", True), {"changed": 1}),
        ("bob joins", lambda: join(bob, f"{gwa}:2"), {"changed": 1}),
        ("cid joins", lambda: join(cid, f"{gwb}:3"), {"changed": 1}),
        ("ann on a second socket", lambda: join(ann, f"{gwb}:4"), {"changed": 1}),
        ("ann's first socket leaves", lambda: leave(ann, f"{gwa}:1"), {"changed": 1}),
        ("bob leaves", lambda: leave(bob, f"{gwa}:2"), {"gone": 1}),
        ("dan joins", lambda: join(dan, f"{gwa}:5"), {"changed": 1}),
        # Bob's place is by his first join, before cid's and dan's: not at the end.
        ("bob comes back", lambda: join(bob, f"{gwa}:6"), {"changed": 1}),
        (
            "ann is made an operator",
            lambda: moderation.set_role(
                by(owner, f"{gwa}:0"), RoleChange(user_id=ann.id, role="operator")
            ),
            {"changed": 1},
        ),
        (
            "ownership goes to cid",
            lambda: moderation.transfer(by(owner, f"{gwa}:0"), TargetUser(user_id=cid.id)),
            {"changed": 2},
        ),
        (
            "dan's socket drops",
            lambda: rooms.disconnect(DisconnectNotice(room=code, conn=f"{gwa}:5")),
            {"changed": 1},
        ),
        ("gwA dies", lambda: sweep(dead_gateways=[gwa], away_before_ms=0), {"changed": 2}),
        ("the away time passes", lambda: sweep(away_before_ms=now_ms() + 1), {"gone": 2}),
        (
            "cid kicks ann",
            lambda: moderation.kick(by(cid, f"{gwb}:3"), TargetUser(user_id=ann.id)),
            {"gone": 1},
        ),
        (
            "eve is banned before she ever joins",
            lambda: moderation.ban(by(cid, f"{gwb}:3"), BanChange(user_id=eve.id)),
            {"changed": 0, "gone": 1},
        ),
        (
            "eve is unbanned",
            lambda: moderation.ban(by(cid, f"{gwb}:3"), BanChange(user_id=eve.id, banned=False)),
            {"changed": 0, "gone": 1},
        ),
        ("eve joins", lambda: join(eve, f"{gwb}:7"), {"changed": 1}),
        ("ann joins again", lambda: join(ann, f"{gwb}:8"), {"changed": 1}),
        (
            "cid bans ann",
            lambda: moderation.ban(by(cid, f"{gwb}:3"), BanChange(user_id=ann.id)),
            {"gone": 1},
        ),
    ]
    members = await listed(rooms, code)
    seen: dict[str, list[str]] = {}
    for what, step, sizes in steps:
        await asyncio.sleep(0.002)  # joins a ms apart: the order is by joined_at_ms alone
        since = len(bus.published)
        await step()
        events = members_events(bus, code, since)
        assert len(events) == 1, what
        delta = MembersDelta.model_validate(events[0]["data"])
        for key, size in sizes.items():
            assert len(getattr(delta, key)) == size, (what, events[0]["data"])
        members = reduce_members(members, events[0]["data"])
        assert members == await listed(rooms, code), what
        seen[what] = [m["user_id"] for m in members]
    assert seen["bob comes back"] == [owner.id, ann.id, bob.id, cid.id, dan.id]
    assert seen["cid bans ann"] == [owner.id, cid.id, eve.id]
