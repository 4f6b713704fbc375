"""`admin.rooms`, the admin dashboard's overview: every room with someone online (private ones
too) with members, playback and queue length, and the newest audit entries; admins only."""

import pytest

from tests.e2e.conftest import Connect, new_room
from tests.support.admin import connect_admin
from tests.support.client import ReplyError
from tests.support.system import System

pytestmark = pytest.mark.e2e


async def test_an_admin_sees_every_live_room_with_its_members_state_and_queue(
    system: System, connect: Connect
) -> None:
    owner = await connect("Ada")
    guest = await connect("Bo")
    private = await new_room(owner, name="Hidden", control_mode="any")
    public = await new_room(owner, name="Shown", visibility="public")
    empty = await new_room(owner, name="Nobody here")
    await owner.call("join", room=private)
    await guest.call("join", room=private)
    await owner.call("join", room=public)
    for video_id in ("dQw4w9WgXcQ", "jNQXAC9IVRw"):
        await guest.call("queue.add", {"video_id": video_id}, room=private)
    await owner.call("play", room=private)
    await owner.wait_playback("playing", video_id="dQw4w9WgXcQ")

    admin = await connect_admin(system.ws_url)
    try:
        overview = await admin.call("admin.rooms", {"limit": 200, "audit_limit": 200})
    finally:
        await admin.close()
    rooms = {r["code"]: r for r in overview["rooms"]}
    assert empty not in rooms  # nobody online
    hidden = rooms[private]
    assert hidden["name"] == "Hidden" and hidden["visibility"] == "private"
    assert hidden["members_online"] == 2
    assert {m["name"] for m in hidden["members"]} == {"Ada", "Bo"}
    assert hidden["now_playing"]["status"] == "playing"
    assert hidden["queue_length"] == 1  # the first entry is playing, off the queue
    assert rooms[public]["members_online"] == 1 and rooms[public]["queue_length"] == 0
    # Busiest first; audit newest first, every entry with its room.
    onlines = [r["members_online"] for r in overview["rooms"]]
    assert onlines == sorted(onlines, reverse=True)
    ids = [e["id"] for e in overview["audit"]]
    assert ids == sorted(ids, reverse=True)
    mine = [e for e in overview["audit"] if e["room"] == private]
    assert {"join", "play"} <= {e["action"] for e in mine}


async def test_admin_rooms_is_refused_to_everyone_else(connect: Connect) -> None:
    owner = await connect("Cy")
    await owner.call("join", room=await new_room(owner))  # even a room's owner
    with pytest.raises(ReplyError) as refused:
        await owner.call("admin.rooms", {})
    assert refused.value.code == "forbidden"
    with pytest.raises(ReplyError) as bad:
        await owner.call("admin.rooms", {"limit": 0})
    assert bad.value.code == "bad_request"
