"""Disconnects of one room that wait for its lock go in together (RoomsService.disconnect):
one transaction and one `members` event for all the sockets a draining gateway, or a watch
party's end, drops at once; never ahead of another command of the room that came first."""

import asyncio

import pytest

from services.common.contracts.commands import EntryRef, Join
from services.common.contracts.envelope import DisconnectNotice
from services.common.contracts.models import UserRef
from services.rooms import repository as rooms_repo
from services.rooms.service import RoomsService
from tests.support.rooms_service import (
    Bus,
    env,
    loaded,
    members,
    new_room,
    user,
    waiting_in_lines,
)

pytestmark = pytest.mark.integration


async def _disconnect_while_locked(rooms: RoomsService, code: str, conns: list[str]) -> list:
    async with rooms._locks.hold(code):
        tasks = [
            asyncio.create_task(rooms.disconnect(DisconnectNotice(room=code, conn=c)))
            for c in conns
        ]
        await waiting_in_lines(rooms, code, len(tasks))
    return await asyncio.gather(*tasks)


async def _joined(
    rooms: RoomsService, code: str, count: int, player: bool = False
) -> list[tuple[UserRef, str]]:
    """`count` new members of the room, each on a socket of its own."""
    joined = [(user(f"member {i}"), f"c{i}") for i in range(count)]
    for who, conn in joined:
        await rooms.join(env(who, code, conn=conn), Join(player=player))
    return joined


async def test_disconnects_that_wait_together_share_one_transaction_and_event(
    rooms_bus: tuple[RoomsService, Bus],
) -> None:
    rooms, bus = rooms_bus
    code = await new_room(rooms, user("owner"))
    guests = [who for who, _conn in await _joined(rooms, code, 5)]
    before = bus.members_events()

    # A socket that never joined the room is among them: nothing to mark, no error.
    replies = await _disconnect_while_locked(rooms, code, [f"c{i}" for i in range(5)] + ["x"])

    assert replies == [{}] * 6
    assert bus.members_events() - before == 1  # one at a time: 5
    listed = await members(rooms, code)
    assert not any(listed[g.id]["online"] for g in guests)


async def test_a_join_after_a_disconnect_is_applied_after_it(
    rooms_bus: tuple[RoomsService, Bus],
) -> None:
    """A member whose socket dropped comes back on a new one: the disconnect and the join
    are lines of their own, in arrival order, so the member ends online."""
    rooms, _bus = rooms_bus
    owner, guest = user("owner"), user("guest")
    code = await new_room(rooms, owner)
    await rooms.join(env(guest, code, conn="old"), Join())

    async with rooms._locks.hold(code):
        gone = asyncio.create_task(rooms.disconnect(DisconnectNotice(room=code, conn="old")))
        await waiting_in_lines(rooms, code, 1)
        back = asyncio.create_task(rooms.join(env(guest, code, conn="new"), Join()))
        await waiting_in_lines(rooms, code, 2)
    await asyncio.gather(gone, back)

    assert (await members(rooms, code))[guest.id]["online"]
    async with rooms.engine.connect() as conn:
        assert await rooms_repo.sessions_of(conn, code, guest.id) == ["new"]


async def test_players_that_drop_together_hold_up_no_start(
    rooms_bus: tuple[RoomsService, Bus],
) -> None:
    rooms, _bus = rooms_bus
    owner = user("owner")
    code = await loaded(rooms, owner)
    players = await _joined(rooms, code, 4, player=True)
    await rooms.play(env(owner, code), None)
    for who, conn in players[:2]:
        await rooms.ready(env(who, code, conn=conn), EntryRef(entry_id="e1"))

    await _disconnect_while_locked(rooms, code, [conn for _who, conn in players[2:]])

    async with rooms.engine.connect() as conn:
        assert rooms_repo.playback_of(await rooms_repo.get_room(conn, code)).status == "playing"
