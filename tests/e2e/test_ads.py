"""Ad sync end to end: players report ads, the room's policy decides whether it waits."""

import asyncio
import time

import pytest

from tests.support.client import ReplyError, WsClient

from .conftest import Connect, new_room

pytestmark = pytest.mark.e2e

VIDEOS = ["dQw4w9WgXcQ", "9bZkp7q19f0"]
LONG_MS = 600_000  # long enough that no entry ends during a test


def uid(client: WsClient) -> str:
    return client.user["id"]  # type: ignore[attr-defined]


async def playing_room(connect: Connect, policy: str, *names: str) -> tuple[str, list[WsClient]]:
    """A room whose players (the first is the owner) are all playing the first video."""
    players = [await connect(name) for name in names]
    owner = players[0]
    room = await new_room(owner)
    await owner.call("room.settings", {"ad_sync": policy}, room=room)
    for player in players:
        await player.call("join", {"player": True}, room=room)
    for video in VIDEOS:
        await owner.call("queue.add", {"video_id": video, "duration_ms": LONG_MS}, room=room)
    await owner.call("play", room=room)
    await all_ready(players, room)
    return room, players


async def all_ready(players: list[WsClient], room: str, **match: object) -> dict:
    starting = await players[0].wait_playback("starting", **match)
    for player in players:
        await player.call("ready", {"entry_id": starting["entry_id"]}, room=room)
    return await players[0].wait_playback("playing", **match)


async def test_pause_all_holds_everyone_in_midroll_and_resumes_together(connect: Connect) -> None:
    room, (owner, bob) = await playing_room(connect, "pause_all", "owner", "bob")
    playing = await owner.wait_playback("playing")
    for c in (owner, bob):
        c.clear()

    reply = await bob.call("ad.start", {"entry_id": playing["entry_id"]}, room=room)
    assert reply == {"counted": True}
    held = [await c.wait_playback("midroll") for c in (owner, bob)]
    assert held[0] == held[1]
    assert held[0]["position_ms"] >= playing["position_ms"]

    await bob.call("ad.end", {"entry_id": playing["entry_id"]}, room=room)
    resumed = await all_ready([owner, bob], room, position_ms=held[0]["position_ms"])
    assert resumed["entry_id"] == playing["entry_id"]
    assert resumed["anchor_ms"] > held[0]["anchor_ms"]


async def test_operators_only_counts_only_the_owners_and_operators_ads(connect: Connect) -> None:
    room, (owner, op, bob) = await playing_room(connect, "operators_only", "owner", "op", "bob")
    await owner.call("room.role", {"user_id": uid(op), "role": "operator"}, room=room)
    assert await bob.call("ad.start", room=room) == {"counted": False}
    assert (await owner.call("room.sync", room=room))["playback"]["status"] == "playing"
    await bob.call("ad.end", room=room)

    assert await op.call("ad.start", room=room) == {"counted": True}
    await bob.wait_playback("midroll")
    owner.clear()
    await op.call("ad.end", room=room)
    await all_ready([owner, op, bob], room)


async def test_off_ignores_ads(connect: Connect) -> None:
    room, (owner, bob) = await playing_room(connect, "off", "owner", "bob")
    assert await bob.call("ad.start", room=room) == {"counted": False}
    assert await owner.call("ad.start", room=room) == {"counted": False}
    assert (await owner.call("room.sync", room=room))["playback"]["status"] == "playing"


async def test_starting_only_delays_only_a_start(connect: Connect) -> None:
    room, (owner, bob) = await playing_room(connect, "starting_only", "owner", "bob")
    assert await bob.call("ad.start", room=room) == {"counted": False}  # while playing
    await bob.call("ad.end", room=room)

    await owner.call("skip", room=room)
    starting = await owner.wait_playback("starting", video_id=VIDEOS[1])
    # Bob's player got a preroll: the start waits for it, past the start timeout (1.5 s).
    assert await bob.call("ad.start", {"entry_id": starting["entry_id"]}, room=room) == {
        "counted": True
    }
    reported = time.monotonic()
    for player in (owner, bob):
        await player.call("ready", {"entry_id": starting["entry_id"]}, room=room)
    await asyncio.sleep(2.0)
    snapshot = await owner.call("room.sync", room=room)
    if time.monotonic() - reported < 3.5:  # well inside AD_MAX_WAIT_MS (4 s in the tests)
        assert snapshot["playback"]["status"] == "starting"

    await bob.call("ad.end", {"entry_id": starting["entry_id"]}, room=room)
    await bob.call("ready", {"entry_id": starting["entry_id"]}, room=room)
    playing = await owner.wait_playback("playing", video_id=VIDEOS[1])
    assert playing["position_ms"] == 0


async def test_a_stuck_ad_cannot_hold_the_room(connect: Connect) -> None:
    room, (owner, bob) = await playing_room(connect, "pause_all", "owner", "bob")
    await bob.call("ad.start", room=room)
    await owner.wait_playback("midroll")
    owner.clear()
    # Bob never reports the end: AD_MAX_WAIT_MS (4 s here) later the room resumes, and the
    # start after it does not wait for Bob's ready longer than a start does.
    starting = await owner.wait_playback("starting", timeout=15)
    await owner.call("ready", {"entry_id": starting["entry_id"]}, room=room)
    await owner.wait_playback("playing", timeout=15, entry_id=starting["entry_id"])


async def test_a_player_leaving_during_its_ad_releases_the_midroll(connect: Connect) -> None:
    room, (owner, bob) = await playing_room(connect, "pause_all", "owner", "bob")
    await bob.call("ad.start", room=room)
    await owner.wait_playback("midroll")
    owner.clear()
    await bob.close()
    await all_ready([owner], room)


async def test_a_late_report_about_an_earlier_entry_changes_nothing(connect: Connect) -> None:
    room, (owner, bob) = await playing_room(connect, "pause_all", "owner", "bob")
    assert await bob.call("ad.start", {"entry_id": "an-earlier-one"}, room=room) == {
        "counted": False
    }
    assert (await owner.call("room.sync", room=room))["playback"]["status"] == "playing"


async def test_only_players_report_ads(connect: Connect) -> None:
    owner, remote = await connect("owner"), await connect("remote")
    room = await new_room(owner)
    await owner.call("join", room=room)
    await remote.call("join", room=room)  # a remote, not a player
    with pytest.raises(ReplyError) as err:
        await remote.call("ad.start", room=room)
    assert err.value.code == "not_member"
