"""A join reads the joiner's membership once, with the room (repository.lock_room), and not
again: neither to authorise the join nor to tell a new member from one coming back. Nor the
room: its snapshot is what the join's transaction read and wrote."""

import dataclasses
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common import sequencer
from services.common.contracts.commands import Join, Seek, SettingsUpdate
from services.rooms import repository as rooms_repo
from services.rooms.transaction import RoomTx
from tests.support.rooms_service import env, loaded, new_room, rooms_service, user

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


async def stored_snapshot(engine: AsyncEngine, code: str) -> dict[str, Any]:
    """The rooms part as a fresh read of the stored room gives it."""
    async with engine.connect() as conn:
        row = await rooms_repo.get_room(conn, code)
        seq = await sequencer.current(conn, code)
    return {
        "room": rooms_repo.room_info(row).model_dump(),
        "settings": rooms_repo.settings_of(row).model_dump(),
        "playback": rooms_repo.playback_of(row).contract_data(),
        "seq": seq,
        "versions": {
            "playback": row.playback_v,
            "members": row.members_v,
            "settings": row.settings_v,
        },
    }


async def test_a_joins_snapshot_is_the_room_as_stored(engine: AsyncEngine) -> None:
    """A join's snapshot is built from what its transaction read and wrote (no read after
    its write): each part and version as a fresh read of the room finds them, after changes
    to every part, and `room.sync` gives the same."""
    rooms, _bus = rooms_service(engine)
    owner, guest = user("owner"), user("guest")
    code = await loaded(rooms, owner)
    await rooms.update_settings(env(owner, code), SettingsUpdate(name="Film night"))
    await rooms.seek(env(owner, code, conn="o1"), Seek(position_ms=42_000))
    for who, conn in ((owner, "o1"), (guest, "g1")):
        snapshot = await rooms.join(env(who, code, conn=conn), Join(player=True))
        stored = await stored_snapshot(engine, code)
        assert {k: snapshot[k] for k in stored} == stored
        assert snapshot["versions"]["members"] == snapshot["seq"], "the join's own change"
    assert stored["settings"]["name"] == "Film night"
    assert stored["playback"]["position_ms"] == 42_000
    synced = await rooms.sync(env(guest, code, conn="g1"), None)
    assert {k: synced[k] for k in stored} == stored
    assert [m["user_id"] for m in synced["members"]] == [m["user_id"] for m in snapshot["members"]]
    await rooms.aclose()


async def test_a_snapshot_after_changes_has_their_versions(engine: AsyncEngine) -> None:
    """Every part a transaction changed shows in its snapshot with the version it was
    written at; a snapshot with changes not yet written is refused."""
    rooms, _bus = rooms_service(engine)
    code = await loaded(rooms, user("owner"))
    async with engine.begin() as conn:
        tx = await RoomTx.open(conn, code)
        tx.set_settings(tx.settings.model_copy(update={"name": "Renamed"}))
        tx.set_playback(dataclasses.replace(tx.playback, position_ms=7_000))
        with pytest.raises(RuntimeError):
            await tx.snapshot_part()
        await tx.commit()
        snapshot = await tx.snapshot_part()
    stored = await stored_snapshot(engine, code)
    assert {k: snapshot[k] for k in stored} == stored
    assert snapshot["versions"] == {
        "playback": snapshot["seq"],
        "members": stored["versions"]["members"],
        "settings": snapshot["seq"] - 1,
    }
    assert snapshot["settings"]["name"] == "Renamed"
    assert snapshot["playback"]["position_ms"] == 7_000
    await rooms.aclose()
