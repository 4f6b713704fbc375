"""Snapshot + the events that follow == a fresh snapshot, for every command (STYLE.md 8),
also under concurrent commands from several clients served by two replicas of each service."""

import asyncio
import random
from typing import Any

import pytest

from tests.support.client import PARTS, WsClient, apply_event, apply_snapshot

from .conftest import Connect, new_room

pytestmark = pytest.mark.e2e

VIDEOS = ["dQw4w9WgXcQ", "9bZkp7q19f0", "kJQP7kiw5Fk", "JGwWNGJdvx8", "OPf0YbXqDm0"]


class Follower:
    """A client's view of a room, built only from its join snapshot and events."""

    def __init__(self, client: WsClient, snapshot: dict[str, Any]) -> None:
        self.client = client
        self.state = apply_snapshot(snapshot)
        self.seen = 0
        self.versions_seen: list[int] = []

    def catch_up(self) -> None:
        for event in self.client.events[self.seen :]:
            self.versions_seen.append(event["v"])
            self.state = apply_event(self.state, event)
        self.seen = len(self.client.events)

    async def settled_against(self, fresh: dict[str, Any], timeout: float = 5.0) -> None:
        """Wait until the events cover the fresh snapshot, then compare every part."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self.catch_up()
            behind = [p for p in PARTS if self.state["versions"][p] < fresh["versions"][p]]
            if not behind or loop.time() > deadline:
                break
            await asyncio.sleep(0.02)
        assert not behind, f"events never brought {behind} up to the snapshot"
        for part in PARTS:
            assert self.state["parts"][part] == fresh[part], part
        assert self.state["versions"] == fresh["versions"]


def uid(client: WsClient) -> str:
    return client.user["id"]  # type: ignore[attr-defined,no-any-return]


async def _command(rng: random.Random, owner: WsClient, room: str, queue: list) -> None:
    choice = rng.choice(
        [
            "add",
            "add",
            "add_next",
            "move",
            "remove",
            "play",
            "pause",
            "seek",
            "skip",
            "restart",
            "rename",
        ]
    )
    if choice in ("add", "add_next"):
        await owner.call(
            "queue.add", {"video_id": rng.choice(VIDEOS), "next": choice == "add_next"}, room=room
        )
    elif choice == "move" and len(queue) > 1:
        await owner.call(
            "queue.move",
            {"entry_id": rng.choice(queue)["id"], "index": rng.randrange(len(queue))},
            room=room,
        )
    elif choice == "remove" and queue:
        await owner.call("queue.remove", {"entry_id": rng.choice(queue)["id"]}, room=room)
    elif choice == "rename":
        await owner.call("room.settings", {"name": f"room {rng.randrange(1000)}"}, room=room)
    elif choice in ("play", "pause", "skip", "restart"):
        reply = await owner.request(choice, room=room)
        assert reply["ok"] or reply["error"]["code"] in ("queue_empty", "bad_state")
    elif choice == "seek":
        reply = await owner.request("seek", {"position_ms": rng.randrange(0, 600_000)}, room=room)
        assert reply["ok"] or reply["error"]["code"] == "bad_state"


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_snapshot_plus_events_equals_fresh_snapshot(connect: Connect, seed: int) -> None:
    rng = random.Random(seed)
    owner, watcher = await connect(), await connect()
    room = await new_room(owner)
    await owner.call("join", room=room)
    follower = Follower(watcher, await watcher.call("join", room=room))
    other, third = await connect(), await connect()
    for step in range(30):
        # Members change too (`members` events carry deltas): someone comes and goes, another
        # comes, the first comes back to their first place (before the second), gets a role,
        # loses it, and is kicked.
        if step == 15:
            await other.call("join", room=room)
            await other.call("leave", room=room)
        elif step == 18:
            await third.call("join", {"player": True}, room=room)
        elif step == 21:
            listed = [m["user_id"] for m in (await other.call("join", room=room))["members"]]
            assert listed.index(uid(other)) < listed.index(uid(third))
        elif step in (23, 25):
            role = "operator" if step == 23 else "member"
            await owner.call("room.role", {"user_id": uid(other), "role": role}, room=room)
        elif step == 27:
            await owner.call("room.kick", {"user_id": uid(other)}, room=room)
        fresh = await owner.call("room.sync", room=room)
        await _command(rng, owner, room, fresh["queue"])
        await follower.settled_against(await owner.call("room.sync", room=room))
    vs = follower.versions_seen
    assert vs == sorted(vs) and len(vs) == len(set(vs)), "v only grows, never repeats"
    # A latecomer's join snapshot agrees with what the follower built.
    late = await connect()
    late_snapshot = await late.call("join", room=room)
    await follower.settled_against(late_snapshot)


async def test_concurrent_commands_on_two_replicas_lose_no_update(connect: Connect) -> None:
    clients = [await connect(f"hammer{i}") for i in range(4)]
    room = await new_room(clients[0], control_mode="any")
    followers = [Follower(c, await c.call("join", room=room)) for c in clients]
    await clients[0].call("queue.add", {"video_id": VIDEOS[0]}, room=room)
    await clients[0].call("play", room=room)

    async def hammer(i: int, client: WsClient) -> list[str]:
        rng = random.Random(i)
        added = []
        for n in range(20):
            entry = await client.call("queue.add", {"video_id": rng.choice(VIDEOS)}, room=room)
            added.append(entry["entry"]["id"])
            if n % 4 == 0:
                await client.call(
                    "queue.move", {"entry_id": entry["entry"]["id"], "index": 0}, room=room
                )
            if n % 5 == 0:
                await client.call("seek", {"position_ms": rng.randrange(100_000)}, room=room)
        return added

    added = await asyncio.gather(*(hammer(i, c) for i, c in enumerate(clients)))
    fresh = await clients[0].call("room.sync", room=room)
    every = {entry_id for ids in added for entry_id in ids}
    assert {e["id"] for e in fresh["queue"]} == every, "every acknowledged add is in the queue"
    assert len(fresh["queue"]) == 80
    for follower in followers:
        await follower.settled_against(fresh)
        vs = follower.versions_seen
        assert vs == sorted(vs) and len(vs) == len(set(vs))
