"""`room.close` through the rooms service's router, against a real PostgreSQL built by the
migrations: who may close, what a close deletes and keeps, what it publishes, and that a
retried close is answered from the command log."""

from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import sequencer
from services.common.contracts import subjects
from services.common.contracts.commands import Join
from services.common.contracts.envelope import CommandEnvelope, EvictNotice
from services.common.contracts.errors import ServiceError
from services.common.contracts.models import UserRef
from services.rooms import repository as rooms_repo
from services.rooms.handlers import build_router
from services.rooms.models import RoomAudit
from services.rooms.service import RoomsService
from tests.support.rooms_service import Bus, env, list_members, new_room, rooms_service, user

pytestmark = pytest.mark.integration

CLOSE = subjects.command("rooms", "close")


async def close(rooms: RoomsService, envelope: CommandEnvelope) -> dict[str, Any]:
    """The reply frame's body, as the gateway would get it."""
    return orjson.loads(await build_router(rooms).dispatch(CLOSE, envelope.model_dump_json()))


async def with_members(rooms: RoomsService) -> tuple[str, UserRef, UserRef]:
    owner, member = user("owner"), user("member")
    code = await new_room(rooms, owner)
    await rooms.join(env(owner, code, "gwA:1"), Join(player=True))
    await rooms.join(env(member, code, "gwB:7"), Join())
    return code, owner, member


def notices(bus: Bus) -> list[EvictNotice]:
    evict = subjects.gateway_notice("evict")
    return [EvictNotice.model_validate_json(p) for s, p in bus.published if s == evict]


async def audit_actions(engine: AsyncEngine, code: str) -> list[tuple[str, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(RoomAudit.action, RoomAudit.user_id)
            .where(RoomAudit.room == code)
            .order_by(RoomAudit.id)
        )
        return [(r.action, r.user_id) for r in rows]


@pytest.mark.parametrize("closer", ["owner", "admin"])
async def test_the_owner_or_an_admin_closes_the_room_for_everyone(
    engine: AsyncEngine, closer: str
) -> None:
    rooms, bus = rooms_service(engine)
    code, owner, _member = await with_members(rooms)
    # The admin never joined: site admins act on any room.
    who = owner if closer == "owner" else user("site admin", admin=True)
    published = len(bus.published)
    request = env(who, code, "gwC:1")

    assert await close(rooms, request) == {"ok": True, "data": {}}

    async with engine.connect() as conn:
        assert await rooms_repo.get_room(conn, code) is None
        assert await sequencer.current(conn, code) is None  # later commands: not_found
        assert await list_members(conn, code) == []
        assert await rooms_repo.players(conn, code) == frozenset()
    # The room's audit went with it; the close itself is recorded, until audit retention.
    assert await audit_actions(engine, code) == [("room.close", who.id)]
    # No room event (there is no room left to version): one notice, every socket leaves.
    after = bus.published[published:]
    assert [subject for subject, _ in after] == [subjects.gateway_notice("evict")]
    assert notices(bus)[-1] == EvictNotice(room=code, reason="closed")
    assert code not in rooms._timers

    # A retry of the same request is answered as the first time, and applied once.
    assert await close(rooms, request) == {"ok": True, "data": {}}
    assert len(bus.published) == published + 1
    # A new request finds no room, and neither does a join.
    again = await close(rooms, env(who, code, "gwC:1"))
    assert again["error"]["code"] == "not_found"
    with pytest.raises(ServiceError) as gone:
        await rooms.join(env(who, code, "gwC:1"), Join())
    assert gone.value.code == "not_found"


async def test_nobody_else_may_close_a_room(engine: AsyncEngine) -> None:
    rooms, bus = rooms_service(engine)
    code, owner, member = await with_members(rooms)
    operator = user("operator")
    await rooms.join(env(operator, code, "gwA:2"), Join())
    async with engine.begin() as conn:
        await rooms_repo.set_role(conn, code, operator.id, "operator")
    published = len(bus.published)

    for who, code_expected in (
        (member, "forbidden"),
        (operator, "forbidden"),
        (user("outsider"), "not_member"),
    ):
        reply = await close(rooms, env(who, code, "gwA:9"))
        assert reply["error"]["code"] == code_expected, who.name
    assert bus.published[published:] == []
    async with engine.connect() as conn:
        assert await rooms_repo.get_room(conn, code) is not None
        assert {m.user_id for m in await list_members(conn, code)} == {
            owner.id,
            member.id,
            operator.id,
        }
    assert ("room.close", member.id) not in await audit_actions(engine, code)
