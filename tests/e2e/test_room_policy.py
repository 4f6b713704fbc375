"""Room policy end to end: the public directory, settings, synchronized speed, vote-skip,
shuffle, the per-user queue cap, "add next", and the system's figures."""

from typing import Any

import httpx
import pytest

from tests.support.client import ReplyError, WsClient
from tests.support.system import System

from .conftest import Connect, new_room
from .test_consistency import Follower

pytestmark = pytest.mark.e2e

VIDEOS = ["dQw4w9WgXcQ", "9bZkp7q19f0", "kJQP7kiw5Fk", "JGwWNGJdvx8", "OPf0YbXqDm0"]


async def get(system: System, path: str, **params: int) -> httpx.Response:
    async with httpx.AsyncClient(base_url=system.base_url, timeout=10) as http:
        return await http.get(path, params=params)


async def every_public_room(system: System) -> list[dict[str, Any]]:
    rooms: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        reply = await get(system, "/api/rooms", limit=2, offset=offset)
        reply.raise_for_status()
        page = reply.json()
        assert len(page["rooms"]) <= 2
        rooms += page["rooms"]
        offset = page["next_offset"]
    return rooms


async def test_the_directory_lists_live_public_rooms_only(connect: Connect, system: System) -> None:
    ann, bob, cat = await connect("ann"), await connect("bob"), await connect("cat")
    public = await new_room(ann, name="Ann's lobby", visibility="public")
    private = await new_room(bob, name="Bob's den")
    quiet = await new_room(cat, name="Nobody here", visibility="public")
    await ann.call("join", room=public)
    await bob.call("join", room=public)
    await bob.call("join", room=private)
    await ann.call("queue.add", {"video_id": VIDEOS[0], "title": "Song"}, room=public)
    await ann.call("play", room=public)
    await ann.wait_playback("playing")

    listed = {r["code"]: r for r in await every_public_room(system)}
    assert private not in listed, "private rooms are found by code only"
    assert quiet not in listed, "nobody online: not worth listing"
    assert listed[public] == {
        "code": public,
        "name": "Ann's lobby",
        "members_online": 2,
        "now_playing": {"status": "playing", "video_id": VIDEOS[0], "title": "Song"},
    }
    # Private rooms are still joined by their code.
    await ann.call("join", room=private)

    # Going private takes a room off the list at once.
    await ann.call("room.settings", {"visibility": "private"}, room=public)
    assert public not in {r["code"] for r in await every_public_room(system)}
    for bad in ({"limit": 0}, {"limit": 101}, {"offset": -1}):
        reply = await get(system, "/api/rooms", **bad)
        assert reply.status_code == 400
        assert reply.json()["error"]["code"] == "bad_request"


async def test_every_setting_reaches_the_members(connect: Connect) -> None:
    owner, bob = await connect("owner"), await connect("bob")
    room = await new_room(owner)
    await owner.call("join", room=room)
    snapshot = await bob.call("join", room=room)
    assert snapshot["settings"] == {
        "name": "owner's room",
        "visibility": "private",
        "control_mode": "owner_only",
        "ad_sync": "pause_all",
        "auto_advance": True,
        "vote_skip_ratio": 0.5,
        "queue_limit_per_user": 0,
    }
    changes = {
        "name": "Movie night",
        "visibility": "public",
        "control_mode": "operators",
        "ad_sync": "starting_only",
        "auto_advance": False,
        "vote_skip_ratio": 0.75,
        "queue_limit_per_user": 3,
    }
    reply = await owner.call("room.settings", changes, room=room)
    assert reply["settings"] == changes
    event = await bob.wait_for(lambda e: e["type"] == "settings")
    assert event["data"] == changes
    for bad in ({"vote_skip_ratio": 0}, {"queue_limit_per_user": -1}, {"ad_sync": "never"}):
        with pytest.raises(ReplyError) as err:
            await owner.call("room.settings", bad, room=room)
        assert err.value.code == "bad_request"


async def test_rate_is_shared_and_reanchors_the_position(connect: Connect) -> None:
    owner, bob = await connect("owner"), await connect("bob")
    room = await new_room(owner)
    await owner.call("join", room=room)
    await bob.call("join", room=room)
    await owner.call("queue.add", {"video_id": VIDEOS[0], "duration_ms": 600_000}, room=room)
    await owner.call("play", room=room)
    before = await bob.wait_playback("playing")

    await owner.call("rate", {"rate": 1.5}, room=room)
    after = await bob.wait_playback("playing", rate=1.5)
    assert after["anchor_ms"] >= before["anchor_ms"]
    assert after["position_ms"] >= before["position_ms"]
    # Continuity: where the old rate had the video at the new anchor, the new one starts.
    at_anchor = before["position_ms"] + (after["anchor_ms"] - before["anchor_ms"]) * 1.0
    assert abs(after["position_ms"] - at_anchor) <= 1
    snapshot = await bob.call("room.sync", room=room)
    assert snapshot["playback"]["rate"] == 1.5

    await owner.call("pause", room=room)
    await owner.call("rate", {"rate": 0.25}, room=room)
    assert (await bob.wait_playback("paused", rate=0.25))["status"] == "paused"
    for bad in (0.2, 2.5):
        with pytest.raises(ReplyError) as err:
            await owner.call("rate", {"rate": bad}, room=room)
        assert err.value.code == "bad_request"
    with pytest.raises(ReplyError) as err:
        await bob.call("rate", {"rate": 1.0}, room=room)  # owner_only: a control command
    assert err.value.code == "forbidden"


async def test_vote_skip_needs_the_rooms_ratio_of_online_members(connect: Connect) -> None:
    owner, ann, bob, cat = [await connect(n) for n in ("owner", "ann", "bob", "cat")]
    room = await new_room(owner)  # owner_only: members cannot skip, but they can vote
    for client in (owner, ann, bob, cat):
        await client.call("join", room=room)
    for video in VIDEOS[:2]:
        await owner.call("queue.add", {"video_id": video}, room=room)
    await owner.call("play", room=room)
    first = await cat.wait_playback("playing", video_id=VIDEOS[0])
    with pytest.raises(ReplyError):
        await ann.call("skip", room=room)

    # 4 online, ratio 0.5: two votes skip. A second vote by the same member does not count.
    assert await ann.call("skip.vote", room=room) == {
        "entry_id": first["entry_id"],
        "votes": 1,
        "needed": 2,
        "skipped": False,
    }
    assert (await ann.call("skip.vote", room=room))["votes"] == 1
    await cat.wait_playback("playing", video_id=VIDEOS[0], skip_votes=1)
    reply = await bob.call("skip.vote", room=room)
    assert (reply["votes"], reply["skipped"]) == (2, True)
    second = await cat.wait_playback("playing", video_id=VIDEOS[1])
    assert second["skip_votes"] == 0, "votes start afresh with the next entry"

    await owner.call("room.settings", {"vote_skip_ratio": 1.0}, room=room)
    for voter in (ann, bob, cat):
        assert not (await voter.call("skip.vote", room=room))["skipped"]
    assert (await owner.call("skip.vote", room=room))["skipped"]
    await cat.wait_playback("idle")
    with pytest.raises(ReplyError) as err:
        await ann.call("skip.vote", room=room)
    assert err.value.code == "bad_state"

    entries = (await owner.call("room.audit", room=room))["entries"]
    assert {"by": "vote", "entry_id": first["entry_id"]} in [
        e["detail"] for e in entries if e["action"] == "skip"
    ]


async def queue_of(client: WsClient, room: str) -> list[str]:
    return [e["video_id"] for e in (await client.call("queue.load", room=room))["queue"]]


async def test_shuffle_reorders_the_queue_for_everyone(connect: Connect) -> None:
    owner, bob = await connect("owner"), await connect("bob")
    room = await new_room(owner)
    await owner.call("join", room=room)
    await bob.call("join", room=room)
    added = []
    for i in range(8):
        entry = await owner.call("queue.add", {"video_id": VIDEOS[i % 5]}, room=room)
        added.append(entry["entry"]["id"])
    for _ in range(5):  # 8! orders: five identical shuffles in a row do not happen
        bob.clear()
        await owner.call("queue.shuffle", room=room)
        event = await bob.wait_for(lambda e: e["type"] == "queue")
        order = [e["id"] for e in event["data"]]
        assert sorted(order) == sorted(added)
        if order != added:
            break
    assert order != added
    fresh = await bob.call("room.sync", room=room)
    assert [e["id"] for e in fresh["queue"]] == order


async def test_add_next_puts_the_entry_at_the_head(connect: Connect) -> None:
    owner = await connect("owner")
    room = await new_room(owner)
    await owner.call("join", room=room)
    for video in VIDEOS[:3]:
        await owner.call("queue.add", {"video_id": video}, room=room)
    await owner.call("queue.add", {"video_id": VIDEOS[3], "next": True}, room=room)
    assert await queue_of(owner, room) == [VIDEOS[3], *VIDEOS[:3]]
    await owner.call("play", room=room)
    await owner.wait_playback("playing", video_id=VIDEOS[3])


async def test_the_per_user_cap_limits_members_not_the_owner(connect: Connect) -> None:
    owner, bob, cat = await connect("owner"), await connect("bob"), await connect("cat")
    room = await new_room(owner, control_mode="any")
    for client in (owner, bob, cat):
        await client.call("join", room=room)
    await owner.call("room.settings", {"queue_limit_per_user": 2}, room=room)
    mine = [(await bob.call("queue.add", {"video_id": v}, room=room))["entry"] for v in VIDEOS[:2]]
    with pytest.raises(ReplyError) as err:
        await bob.call("queue.add", {"video_id": VIDEOS[2]}, room=room)
    assert err.value.code == "user_queue_full"
    await cat.call("queue.add", {"video_id": VIDEOS[2]}, room=room)  # the cap is per user
    for video in VIDEOS[:3]:
        await owner.call("queue.add", {"video_id": video}, room=room)

    await bob.call("queue.remove", {"entry_id": mine[0]["id"]}, room=room)
    await bob.call("queue.add", {"video_id": VIDEOS[4]}, room=room)  # room again
    # Playing an entry takes it off the queue: it no longer counts against its adder.
    await owner.call("queue.move", {"entry_id": mine[1]["id"], "index": 0}, room=room)
    await owner.call("play", room=room)
    await owner.wait_playback("playing", video_id=mine[1]["video_id"])
    await bob.call("queue.add", {"video_id": VIDEOS[0]}, room=room)


async def test_stats_gather_every_replica(connect: Connect, system: System) -> None:
    owner, bob = await connect("owner"), await connect("bob")
    room = await new_room(owner)
    await owner.call("join", room=room)
    await bob.call("join", room=room)
    reply = await get(system, "/api/stats")
    assert reply.status_code == 200
    stats = reply.json()
    assert stats["rooms"] >= 1
    assert stats["rooms_total"] >= stats["rooms"]
    assert stats["users_online"] >= 2
    assert stats["connections"] >= 2
    assert stats["messages_per_s"] >= 0 and stats["events_per_s"] >= 0
    gateways = stats["gateways"]
    assert sum(g["connections"] for g in gateways.values()) == stats["connections"]
    assert all(g["rooms"] >= 0 and g["messages_per_s"] >= 0 for g in gateways.values())
    services = stats["services"]
    assert services["gateway"]["replicas"] == len(gateways) >= 1
    assert services["rooms"]["replicas"] == 2  # the test system's replicas
    assert services["queue"]["replicas"] == 2
    assert services["chat"]["replicas"] == 2
    assert services["auth"]["replicas"] >= 1
    assert stats["window_ms"] == 300


async def test_policy_commands_keep_snapshot_plus_events_equal_to_a_fresh_snapshot(
    connect: Connect,
) -> None:
    """STYLE.md point 8 for this issue's commands: a watcher's snapshot plus the events after
    it equals a fresh snapshot after every step."""
    owner, watcher, bob = await connect("owner"), await connect("watcher"), await connect("bob")
    room = await new_room(owner, control_mode="any")
    await owner.call("join", {"player": True}, room=room)
    await bob.call("join", room=room)
    follower = Follower(watcher, await watcher.call("join", room=room))
    for video in VIDEOS:
        await owner.call("queue.add", {"video_id": video, "duration_ms": 600_000}, room=room)
    bob_id = bob.user["id"]  # type: ignore[attr-defined]

    async def ready_if_starting() -> None:
        playback = (await owner.call("room.sync", room=room))["playback"]
        if playback["status"] == "starting":
            await owner.call("ready", {"entry_id": playback["entry_id"]}, room=room)

    steps: list[tuple[WsClient, str, dict[str, Any]]] = [
        (owner, "play", {}),
        (owner, "rate", {"rate": 2.0}),
        (owner, "ad.start", {}),
        (owner, "ad.end", {}),
        (bob, "skip.vote", {}),
        (owner, "queue.shuffle", {}),
        (owner, "queue.add", {"video_id": VIDEOS[0], "next": True}),
        (owner, "room.settings", {"vote_skip_ratio": 1.0, "queue_limit_per_user": 4}),
        (owner, "room.role", {"user_id": bob_id, "role": "operator"}),
        (owner, "room.transfer", {"user_id": bob_id}),
        (bob, "room.transfer", {"user_id": owner.user["id"]}),  # type: ignore[attr-defined]
        (owner, "room.kick", {"user_id": bob_id}),
        (bob, "join", {}),
        (owner, "room.ban", {"user_id": bob_id}),
        (owner, "room.ban", {"user_id": bob_id, "banned": False}),
        (owner, "rate", {"rate": 0.5}),
    ]
    for client, command, data in steps:
        await client.call(command, data, room=room)
        await ready_if_starting()
        await follower.settled_against(await owner.call("room.sync", room=room))
    vs = follower.versions_seen
    assert vs == sorted(vs) and len(vs) == len(set(vs)), "v only grows, never repeats"
