"""`room.close` end to end: the owner or a site admin ends a room for everyone. Every socket in
it, on every gateway, gets `evicted` (`closed`) and no more of its events; the room is gone
from the directory and the admin overview, and commands on it get `not_found`."""

from typing import Any

import pytest

from tests.support.admin import connect_admin
from tests.support.client import ReplyError, WsClient
from tests.support.system import System

from .conftest import Connect, StrictGateway, new_room
from .test_room_policy import every_public_room

pytestmark = pytest.mark.e2e

CLOSED = {"reason": "closed"}


async def live_codes(admin: WsClient) -> set[str]:
    overview = await admin.call("admin.rooms", {"limit": 200, "audit_limit": 0})
    return {r["code"] for r in overview["rooms"]}


async def evicted(client: WsClient, room: str) -> dict[str, Any]:
    return await client.wait_for(lambda e: e["type"] == "evicted" and e["room"] == room)


async def test_an_admin_closes_a_room_for_its_members_on_every_gateway(
    connect: Connect, system: System, strict_gateway: StrictGateway
) -> None:
    owner, near = await connect("owner"), await connect("near")
    room = await new_room(owner, name="To be closed", visibility="public")
    other = await new_room(owner, name="Stays open")
    await near.call("join", {"player": True}, room=room)
    await near.call("join", room=other)
    # The second member is on the other gateway: each gateway takes its own sockets out.
    far_user = await connect("far")
    far = await WsClient.connect(strict_gateway.ws_url, far_user.token)  # type: ignore[attr-defined]
    admin = await connect_admin(system.ws_url)
    try:
        await far.call("join", room=room)
        assert room in await live_codes(admin)
        assert room in {r["code"] for r in await every_public_room(system)}

        assert await admin.call("room.close", room=room) == {}

        for member in (near, far):
            assert (await evicted(member, room))["data"] == CLOSED
        assert room not in await live_codes(admin)
        assert room not in {r["code"] for r in await every_public_room(system)}
        overview = await admin.call("admin.rooms", {"audit_limit": 200})
        closes = [e for e in overview["audit"] if e["room"] == room]
        assert [(e["action"], e["user_id"]) for e in closes] == [
            ("room.close", admin.user["id"])  # type: ignore[attr-defined]
        ]

        # The sockets live on (a close is not a disconnect) and stay in their other rooms.
        await owner.call("room.settings", {"name": "Still here"}, room=other)
        await near.wait_for(lambda e: e["type"] == "settings" and e["room"] == other)
        for member in (near, far):
            assert not member.closed.done()
            with pytest.raises(ReplyError) as gone:
                await member.call("join", room=room)
            assert gone.value.code == "not_found"
        with pytest.raises(ReplyError) as again:
            await admin.call("room.close", room=room)
        assert again.value.code == "not_found"
    finally:
        await far.close()
        await admin.close()


async def test_a_member_may_not_close_a_room_and_its_owner_may(connect: Connect) -> None:
    owner, member = await connect("owner"), await connect("member")
    room = await new_room(owner)
    await owner.call("join", room=room)
    await member.call("join", room=room)

    with pytest.raises(ReplyError) as refused:
        await member.call("room.close", room=room)
    assert refused.value.code == "forbidden"
    await owner.call("room.settings", {"name": "still open"}, room=room)
    await member.wait_for(lambda e: e["type"] == "settings")

    # Retried with the same request id (a client that lost the reply): applied once.
    request_id = owner.new_id()
    first = await owner.request("room.close", room=room, request_id=request_id)
    retry = await owner.request("room.close", room=room, request_id=request_id)
    assert first == {"re": request_id, "ok": True, "data": {}}
    assert retry == first
    for client in (owner, member):
        assert (await evicted(client, room))["data"] == CLOSED
    with pytest.raises(ReplyError) as gone:
        await owner.call("queue.add", {"video_id": "dQw4w9WgXcQ"}, room=room)
    assert gone.value.code == "not_found"
