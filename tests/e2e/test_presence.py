"""Presence end to end: a member whose connection dies shows away, and after the janitor's
PRESENCE_AWAY_TIMEOUT_SECONDS (3 s in tests) leaves the room for everyone; a member who comes
back in time keeps their place and role; a socket that stops answering pings is closed; the
sessions of a gateway killed with -9 go the same way once its heartbeat expires.

Times are measured and printed, never asserted (the machine is shared).
"""

import asyncio
import time
from typing import Any

import orjson
import pytest

from tests.support import rawsocket
from tests.support.client import WsClient, member_news
from tests.support.system import System

from .conftest import Connect, StrictGateway, new_room

pytestmark = pytest.mark.e2e


def uid(client: WsClient) -> str:
    return client.user["id"]  # type: ignore[attr-defined,no-any-return]


def member(event: dict[str, Any], user_id: str) -> dict[str, Any] | None:
    if event["type"] != "members":
        return None
    return member_news(event, user_id)[1]


async def wait_member(watcher: WsClient, user_id: str, timeout: float = 30, **state: Any) -> float:
    """Seconds until a members event shows the user so (or gone, with state={})."""
    started = time.monotonic()

    def matches(event: dict[str, Any]) -> bool:
        if event["type"] != "members":
            return False
        spoke, found = member_news(event, user_id)
        if not state:
            return spoke and found is None
        return found is not None and all(found[k] == v for k, v in state.items())

    await watcher.wait_for(matches, timeout)
    return time.monotonic() - started


async def test_a_dropped_member_shows_away_then_leaves_for_everyone(connect: Connect) -> None:
    owner, guest_ = await connect("owner"), await connect("dropper")
    room = await new_room(owner)
    await owner.call("join", room=room)
    await guest_.call("join", {"player": True}, room=room)
    owner.clear()
    guest_.ws.transport.abort()  # the network goes: no close frame, no `leave`
    away_s = await wait_member(owner, uid(guest_), online=False, away=True, player=False)
    gone_s = await wait_member(owner, uid(guest_))
    print(f"\naway shown after {away_s:.2f} s; left the room {gone_s:.2f} s later")
    # The owner, who holds a role, stays listed; online again needs a socket.
    snapshot = await owner.call("room.sync", room=room)
    assert [m["user_id"] for m in snapshot["members"]] == [uid(owner)]


async def test_a_member_who_comes_back_in_time_keeps_place_and_role(
    connect: Connect, system: System
) -> None:
    owner, op = await connect("owner"), await connect("operator")
    room = await new_room(owner, control_mode="operators")
    await owner.call("join", room=room)
    await op.call("join", room=room)
    await owner.call("room.role", {"user_id": uid(op), "role": "operator"}, room=room)
    before = [m["user_id"] for m in (await owner.call("room.sync", room=room))["members"]]
    owner.clear()
    op.ws.transport.abort()
    await wait_member(owner, uid(op), away=True, role="operator")

    back = await WsClient.connect(system.ws_url, op.token)  # type: ignore[attr-defined]
    try:
        snapshot = await back.call("join", room=room)
        mine = next(m for m in snapshot["members"] if m["user_id"] == uid(op))
        assert mine == {**mine, "role": "operator", "online": True, "away": False}
        assert [m["user_id"] for m in snapshot["members"]] == before, "same place in the list"
        # Past the away timeout: still there, still an operator who may control playback.
        await asyncio.sleep(4.5)
        members = (await back.call("room.sync", room=room))["members"]
        assert next(m for m in members if m["user_id"] == uid(op))["role"] == "operator"
        await back.call("pause", room=room)
    finally:
        await back.close()


async def test_an_explicit_leave_is_not_away(connect: Connect) -> None:
    owner, guest_ = await connect(), await connect()
    room = await new_room(owner)
    await owner.call("join", room=room)
    await guest_.call("join", room=room)
    owner.clear()
    await guest_.call("leave", room=room)
    await wait_member(owner, uid(guest_), timeout=5)
    assert not any((m := member(e, uid(guest_))) is not None and m["away"] for e in owner.events), (
        "a leave removes the member at once"
    )


async def test_a_socket_that_stops_answering_pings_is_closed_and_shows_away(
    connect: Connect, strict_gateway: StrictGateway
) -> None:
    owner, sleeper = await connect("owner"), await connect("sleeper")
    room = await new_room(owner)
    await owner.call("join", room=room)
    await sleeper.close()  # its token now opens a socket that goes silent after joining
    join = orjson.dumps({"id": "j1", "type": "join", "room": room, "data": {}})
    silent = await asyncio.to_thread(
        rawsocket.open_and_send,
        strict_gateway.port,
        sleeper.token,  # type: ignore[attr-defined]
        join,
    )
    try:
        await wait_member(owner, uid(sleeper), online=True)
        # Pings every 1 s, a pong timeout of 3 s: the gateway gives up on it and says so.
        away_s = await wait_member(owner, uid(sleeper), away=True)
        print(f"\nsilent socket shown away after {away_s:.2f} s (ping 1 s + pong timeout 3 s)")
    finally:
        silent.close()


async def test_a_killed_gateway_leaves_its_members_away_then_gone(
    connect: Connect, system: System
) -> None:
    """No goodbye from the gateway: its heartbeat key expires, the janitor asks rooms to
    mark its sessions away, then the away timeout removes them."""
    from services.common.devstack import free_port

    port = free_port()
    doomed = system.start_service("gateway", {"PORT": str(port), "GATEWAY_ID": f"doomed-{port}"})
    owner, victim = await connect("owner"), await connect("victim")
    room = await new_room(owner)
    await owner.call("join", room=room)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                on_doomed = await WsClient.connect(
                    f"ws://127.0.0.1:{port}/ws",
                    victim.token,  # type: ignore[attr-defined]
                )
                break
            except OSError:
                assert time.monotonic() < deadline, doomed.log()
                await asyncio.sleep(0.2)
        await on_doomed.call("join", room=room)
        await wait_member(owner, uid(victim), online=True)
        owner.clear()
        killed_at = time.monotonic()
        doomed.kill()
        await wait_member(owner, uid(victim), away=True)
        away_s = time.monotonic() - killed_at
        await wait_member(owner, uid(victim))
        gone_s = time.monotonic() - killed_at
        print(f"\nkilled gateway: members away after {away_s:.2f} s, gone after {gone_s:.2f} s")
        await on_doomed.close()
    finally:
        doomed.kill()
