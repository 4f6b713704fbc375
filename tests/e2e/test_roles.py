"""Roles and moderation end to end: operators, ownership transfer, kick, ban, and the audit."""

import asyncio
import contextlib
from typing import Any

import httpx
import pytest

from services.common.devstack import free_port
from tests.support.admin import connect_admin
from tests.support.client import ReplyError, WsClient, member_news
from tests.support.system import System

from .conftest import Connect, new_room

pytestmark = pytest.mark.e2e


def uid(client: WsClient) -> str:
    return client.user["id"]  # type: ignore[attr-defined]


def roles(members: list[dict[str, Any]]) -> dict[str, str]:
    return {m["user_id"]: m["role"] for m in members}


async def members_after(
    client: WsClient, room: str, user_id: str, role: str | None
) -> list[dict[str, Any]]:
    """Wait for a `members` event that lists `user_id` with `role` (None: no longer
    listed), then return the room's whole list (events carry only what changed)."""

    def says(event: dict[str, Any]) -> bool:
        if event["type"] != "members":
            return False
        spoke, entry = member_news(event, user_id)
        return spoke and (entry["role"] if entry else None) == role

    await client.wait_for(says)
    return (await client.call("room.sync", room=room))["members"]


async def refused(client: WsClient, command: str, data: dict[str, Any], room: str) -> str:
    with pytest.raises(ReplyError) as err:
        await client.call(command, data, room=room)
    return err.value.code


async def test_operators_are_granted_and_revoked_by_the_owner(connect: Connect) -> None:
    owner, ann, bob = await connect("owner"), await connect("ann"), await connect("bob")
    room = await new_room(owner, control_mode="operators")
    for client in (owner, ann, bob):
        await client.call("join", room=room)
    await owner.call("queue.add", {"video_id": "dQw4w9WgXcQ"}, room=room)
    assert await refused(ann, "play", {}, room) == "forbidden"

    await owner.call("room.role", {"user_id": uid(ann), "role": "operator"}, room=room)
    members = await members_after(bob, room, uid(ann), "operator")
    assert roles(members)[uid(bob)] == "member"
    await ann.call("play", room=room)  # an operator controls in `operators` mode
    await bob.wait_playback("playing")
    # Operators do not hand out roles.
    assert await refused(ann, "room.role", {"user_id": uid(bob), "role": "operator"}, room) == (
        "forbidden"
    )

    await owner.call("room.role", {"user_id": uid(ann), "role": "member"}, room=room)
    await members_after(bob, room, uid(ann), "member")
    assert await refused(ann, "pause", {}, room) == "forbidden"
    # The owner's role moves only by transfer; strangers have no role to change.
    assert await refused(owner, "room.role", {"user_id": uid(owner), "role": "member"}, room) == (
        "bad_request"
    )
    stranger = await connect("stranger")
    assert await refused(
        owner, "room.role", {"user_id": uid(stranger), "role": "operator"}, room
    ) == ("not_found")


async def test_ownership_moves_and_the_former_owner_stays_an_operator(connect: Connect) -> None:
    owner, heir = await connect("owner"), await connect("heir")
    room = await new_room(owner)
    await owner.call("join", room=room)
    await heir.call("join", room=room)
    await owner.call("room.transfer", {"user_id": uid(heir)}, room=room)
    members = await members_after(owner, room, uid(heir), "owner")
    assert roles(members)[uid(owner)] == "operator"
    snapshot = await heir.call("room.sync", room=room)
    assert snapshot["room"]["owner_id"] == uid(heir)
    # The new owner runs the room; the former one no longer may.
    await heir.call("room.settings", {"name": "Heir's room"}, room=room)
    assert await refused(owner, "room.settings", {"name": "mine"}, room) == "forbidden"
    assert await refused(owner, "room.transfer", {"user_id": uid(owner)}, room) == "forbidden"


async def test_a_kicked_user_stops_receiving_events_and_may_rejoin(
    connect: Connect, system: System
) -> None:
    owner, watcher, kicked = await connect("owner"), await connect("w"), await connect("k")
    room = await new_room(owner)
    for client in (owner, watcher):
        await client.call("join", room=room)
    # The same user on a second socket (a phone remote): both leave the room.
    remote = await WsClient.connect(system.ws_url, kicked.token)  # type: ignore[attr-defined]
    try:
        await kicked.call("join", {"player": True}, room=room)
        await remote.call("join", room=room)

        await owner.call("room.kick", {"user_id": uid(kicked)}, room=room)
        members = await members_after(watcher, room, uid(kicked), None)
        assert uid(owner) in roles(members)
        for socket in (kicked, remote):
            evicted = await socket.wait_for(lambda e: e["type"] == "evicted")
            assert evicted == {"type": "evicted", "room": room, "data": {"reason": "kicked"}}

        # The room goes on without them: the next event reaches the watcher, not the kicked
        # (one gateway fans an event out to all its sockets in one pass).
        await owner.call("room.settings", {"name": "after the kick"}, room=room)
        await watcher.wait_for(lambda e: e["type"] == "settings")
        await asyncio.sleep(0.2)
        for socket in (kicked, remote):
            assert not [e for e in socket.events if e["type"] == "settings"]
        assert await refused(kicked, "play", {}, room) == "not_member"
        assert await refused(remote, "room.sync", {}, room) == "not_member"
    finally:
        await remote.close()

    snapshot = await kicked.call("join", room=room)  # a kick is not a ban
    assert snapshot["settings"]["name"] == "after the kick"
    await owner.call("room.settings", {"name": "welcome back"}, room=room)
    await kicked.wait_for(lambda e: e["type"] == "settings" and e["data"]["name"] == "welcome back")


async def test_a_banned_user_cannot_rejoin_until_unbanned(connect: Connect) -> None:
    owner, op, pest = await connect("owner"), await connect("op"), await connect("pest")
    room = await new_room(owner)
    for client in (owner, op, pest):
        await client.call("join", {"player": True}, room=room)
    await owner.call("room.role", {"user_id": uid(op), "role": "operator"}, room=room)

    await op.call("room.ban", {"user_id": uid(pest)}, room=room)  # operators ban members
    evicted = await pest.wait_for(lambda e: e["type"] == "evicted")
    assert evicted["data"] == {"reason": "banned"}
    members = await members_after(owner, room, uid(pest), None)
    assert uid(op) in roles(members)
    assert await refused(pest, "join", {}, room) == "forbidden"
    assert await refused(pest, "queue.add", {"video_id": "dQw4w9WgXcQ"}, room) == "not_member"

    await owner.call("room.ban", {"user_id": uid(pest), "banned": False}, room=room)
    snapshot = await pest.call("join", room=room)
    assert uid(pest) in roles(snapshot["members"])


async def test_a_user_may_be_banned_before_they_ever_join(connect: Connect) -> None:
    owner, troll = await connect("owner"), await connect("troll")
    room = await new_room(owner)
    await owner.call("room.ban", {"user_id": uid(troll)}, room=room)
    assert await refused(troll, "join", {}, room) == "forbidden"


async def test_nobody_moderates_upwards(connect: Connect) -> None:
    owner, op1, op2, member = [await connect(n) for n in ("owner", "op1", "op2", "m")]
    room = await new_room(owner)
    for client in (owner, op1, op2, member):
        await client.call("join", room=room)
    for op in (op1, op2):
        await owner.call("room.role", {"user_id": uid(op), "role": "operator"}, room=room)
    assert await refused(op1, "room.kick", {"user_id": uid(owner)}, room) == "forbidden"
    assert await refused(op1, "room.ban", {"user_id": uid(op2)}, room) == "forbidden"
    assert await refused(member, "room.kick", {"user_id": uid(op1)}, room) == "forbidden"
    assert await refused(owner, "room.ban", {"user_id": uid(owner)}, room) == "forbidden"
    await owner.call("room.kick", {"user_id": uid(op2)}, room=room)  # the owner may
    await op1.call("room.kick", {"user_id": uid(member)}, room=room)  # and operators kick members
    assert await refused(op1, "room.kick", {"user_id": uid(member)}, room) == "not_found"


async def test_the_audit_tells_who_did_what_to_the_owner_and_admins(
    connect: Connect, system: System
) -> None:
    owner, bob = await connect("owner"), await connect("bob")
    room = await new_room(owner, control_mode="any")
    await owner.call("join", room=room)
    await bob.call("join", room=room)
    await owner.call("queue.add", {"video_id": "dQw4w9WgXcQ"}, room=room)
    await bob.call("play", room=room)
    await bob.call("seek", {"position_ms": 5_000}, room=room)
    await owner.call("room.settings", {"control_mode": "operators"}, room=room)
    await owner.call("room.role", {"user_id": uid(bob), "role": "operator"}, room=room)
    await owner.call("room.kick", {"user_id": uid(bob)}, room=room)

    entries = (await owner.call("room.audit", room=room))["entries"]
    got = [(e["action"], e["user_id"], e["target_id"]) for e in entries]
    assert got == [
        ("room.kick", uid(owner), uid(bob)),
        ("room.role", uid(owner), uid(bob)),
        ("room.settings", uid(owner), None),
        ("seek", uid(bob), None),
        ("play", uid(bob), None),
        ("join", uid(bob), None),
        ("join", uid(owner), None),
    ]
    assert entries[2]["detail"] == {"control_mode": "operators"}
    assert entries[3]["detail"] == {"position_ms": 5_000}
    assert entries[0]["name"] == "owner"
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)

    page = (await owner.call("room.audit", {"limit": 2, "before_id": entries[1]["id"]}, room=room))[
        "entries"
    ]
    assert [e["id"] for e in page] == [entries[2]["id"], entries[3]["id"]]

    await bob.call("join", room=room)
    assert await refused(bob, "room.audit", {}, room) == "forbidden"
    admin = await connect_admin(system.ws_url)
    try:
        assert (await admin.call("room.audit", room=room))["entries"][0]["action"] == "join"
    finally:
        await admin.close()


async def test_eviction_reaches_the_users_sockets_on_every_gateway(
    connect: Connect, system: System
) -> None:
    """Each gateway holds only its own sockets: the notice goes to all of them."""
    port = free_port()
    second = system.start_service("gateway", {"PORT": str(port)})
    try:
        other_ws = f"ws://127.0.0.1:{port}/ws"
        async with httpx.AsyncClient(timeout=2) as http:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        owner, kicked = await connect("owner"), await connect("kicked")
        room = await new_room(owner)
        await owner.call("join", room=room)
        await kicked.call("join", {"player": True}, room=room)
        far = await WsClient.connect(other_ws, kicked.token)  # type: ignore[attr-defined]
        watcher = await WsClient.connect(other_ws, owner.token)  # type: ignore[attr-defined]
        try:
            await far.call("join", room=room)
            await watcher.call("join", room=room)
            await owner.call("room.ban", {"user_id": uid(kicked)}, room=room)
            for socket in (kicked, far):
                evicted = await socket.wait_for(lambda e: e["type"] == "evicted")
                assert evicted["data"] == {"reason": "banned"}
            await owner.call("room.settings", {"name": "two gateways"}, room=room)
            await watcher.wait_for(lambda e: e["type"] == "settings")
            await owner.wait_for(lambda e: e["type"] == "settings")
            await asyncio.sleep(0.2)
            for socket in (kicked, far):
                assert not [e for e in socket.events if e["type"] == "settings"]
        finally:
            await far.close()
            await watcher.close()
    finally:
        second.stop()
        system.processes.remove(second)
