"""A join reads the joiner's membership once, with the room (repository.lock_room), and not
again: neither to authorise the join nor to tell a new member from one coming back."""

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.contracts.commands import Join
from services.rooms import repository as rooms_repo
from tests.support.rooms_service import env, new_room, rooms_service, user

pytestmark = pytest.mark.integration


async def test_a_join_reads_the_joiners_membership_with_the_room(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    rooms, _bus = rooms_service(engine)
    owner, guest = user("owner"), user("guest")
    code = await new_room(rooms, owner)
    read_alone: list[str] = []
    membership = rooms_repo.get_membership

    async def counted(conn: Any, room: str, user_id: str) -> Any:
        read_alone.append(user_id)
        return await membership(conn, room, user_id)

    monkeypatch.setattr(rooms_repo, "get_membership", counted)
    first = await rooms.join(env(guest, code, conn="g1"), Join())
    second = await rooms.join(env(guest, code, conn="g2"), Join())  # a member by now
    renamed = guest.model_copy(update={"name": "Guest, renamed"})  # a new name, same user
    third = await rooms.join(env(renamed, code, conn="g3"), Join())
    assert read_alone == []
    for snapshot in (first, second):
        (entry,) = [m for m in snapshot["members"] if m["user_id"] == guest.id]
        assert entry["role"] == "member"
    (entry,) = [m for m in third["members"] if m["user_id"] == guest.id]
    assert entry["name"] == "Guest, renamed"
    assert second["seq"] > first["seq"]  # the second socket's join is a change too
    await rooms.aclose()
