"""Synchronized playback end to end: real processes, real sockets."""

import asyncio

import pytest

from services.common.jsonutil import now_ms
from tests.support.client import ReplyError

from .conftest import Connect, new_room

pytestmark = pytest.mark.e2e

VIDEOS = ["dQw4w9WgXcQ", "9bZkp7q19f0", "kJQP7kiw5Fk"]


async def test_three_players_start_together_at_a_future_instant(connect: Connect) -> None:
    owner, bob, cat = await connect("owner"), await connect("bob"), await connect("cat")
    room = await new_room(owner)
    for client in (owner, bob, cat):
        await client.call("join", {"player": True}, room=room)
    for video in VIDEOS[:2]:
        await owner.call("queue.add", {"video_id": video}, room=room)

    await owner.call("play", room=room)
    starting = [await c.wait_playback("starting") for c in (owner, bob, cat)]
    entry_id = starting[0]["entry_id"]
    assert {s["video_id"] for s in starting} == {VIDEOS[0]}
    for client in (owner, bob, cat):
        await client.call("ready", {"entry_id": entry_id}, room=room)

    received = []
    for client in (owner, bob, cat):
        playing = await client.wait_playback("playing")
        received.append((playing, now_ms()))
    events = [p for p, _ in received]
    assert all(e == events[0] for e in events), "every client gets the same playback event"
    assert events[0]["position_ms"] == 0
    # The shared start instant is ahead of the moment each client received it.
    assert all(event["anchor_ms"] > at for event, at in received)


async def test_pause_seek_skip_restart_reach_everyone(connect: Connect) -> None:
    owner, bob, cat = await connect(), await connect(), await connect()
    room = await new_room(owner)
    for client in (owner, bob, cat):
        await client.call("join", room=room)  # no players: starts need no ready
    for video in VIDEOS:
        await owner.call("queue.add", {"video_id": video}, room=room)
    await owner.call("play", room=room)
    for c in (owner, bob, cat):
        await c.wait_playback("playing", video_id=VIDEOS[0])

    await owner.call("pause", room=room)
    paused = [await c.wait_playback("paused") for c in (owner, bob, cat)]
    assert len({p["position_ms"] for p in paused}) == 1

    await owner.call("seek", {"position_ms": 42_000}, room=room)
    for c in (owner, bob, cat):
        await c.wait_playback("paused", position_ms=42_000)

    await owner.call("play", room=room)
    for c in (owner, bob, cat):
        await c.wait_playback("playing", position_ms=42_000)
    await owner.call("seek", {"position_ms": 90_000}, room=room)
    for c in (owner, bob, cat):
        await c.wait_playback("playing", position_ms=90_000)

    await owner.call("skip", room=room)
    for c in (owner, bob, cat):
        await c.wait_playback("playing", video_id=VIDEOS[1], position_ms=0)

    await owner.call("seek", {"position_ms": 5_000}, room=room)
    for c in (owner, bob, cat):
        c.clear()
    await owner.call("restart", room=room)
    for c in (owner, bob, cat):
        await c.wait_playback("playing", video_id=VIDEOS[1], position_ms=0)


async def test_late_joiner_computes_the_same_position(connect: Connect) -> None:
    owner = await connect()
    room = await new_room(owner)
    await owner.call("join", room=room)
    await owner.call("queue.add", {"video_id": VIDEOS[0]}, room=room)
    await owner.call("play", room=room)
    playing = await owner.wait_playback("playing")
    await asyncio.sleep(0.6)

    late = await connect("late")
    snapshot = await late.call("join", room=room)
    at = now_ms()
    pb = snapshot["playback"]
    assert pb == playing
    expected = pb["position_ms"] + (at - pb["anchor_ms"]) * pb["rate"]
    assert 300 <= expected <= 3_000  # ~600 ms in, give or take the start buffer and load


async def test_member_without_control_rights_is_refused(connect: Connect) -> None:
    owner, guest_user = await connect(), await connect()
    room = await new_room(owner, control_mode="owner_only")
    await owner.call("join", room=room)
    await guest_user.call("join", room=room)
    await owner.call("queue.add", {"video_id": VIDEOS[0]}, room=room)
    for command, data in [
        ("play", {}),
        ("pause", {}),
        ("seek", {"position_ms": 1000}),
        ("skip", {}),
        ("restart", {}),
    ]:
        with pytest.raises(ReplyError) as err:
            await guest_user.call(command, data, room=room)
        assert err.value.code == "forbidden", command

    await owner.call("room.settings", {"control_mode": "any"}, room=room)
    await guest_user.wait_for(lambda e: e["type"] == "settings")
    await guest_user.call("play", room=room)
    await guest_user.wait_playback("playing")


async def test_outsider_cannot_control_a_room(connect: Connect) -> None:
    owner, outsider = await connect(), await connect()
    room = await new_room(owner, control_mode="any")
    await owner.call("join", room=room)
    with pytest.raises(ReplyError) as err:
        await outsider.call("play", room=room)
    assert err.value.code == "not_member"
    with pytest.raises(ReplyError) as err:
        await outsider.call("queue.add", {"video_id": VIDEOS[0]}, room=room)
    assert err.value.code == "not_member"


async def test_start_does_not_wait_forever_for_a_silent_player(connect: Connect) -> None:
    owner, silent = await connect(), await connect()
    room = await new_room(owner)
    await owner.call("join", {"player": True}, room=room)
    await silent.call("join", {"player": True}, room=room)
    await owner.call("queue.add", {"video_id": VIDEOS[0]}, room=room)
    await owner.call("play", room=room)
    starting = await owner.wait_playback("starting")
    await owner.call("ready", {"entry_id": starting["entry_id"]}, room=room)
    began = now_ms()
    # PLAYBACK_START_TIMEOUT_MS is 1.5 s in the tests; the silent player never reports.
    await owner.wait_playback("playing", timeout=5)
    assert now_ms() - began < 4_000


async def test_auto_advance_when_a_video_ends(connect: Connect) -> None:
    owner = await connect()
    room = await new_room(owner)
    await owner.call("join", room=room)
    await owner.call("queue.add", {"video_id": VIDEOS[0], "duration_ms": 800}, room=room)
    await owner.call("queue.add", {"video_id": VIDEOS[1]}, room=room)
    await owner.call("play", room=room)
    await owner.wait_playback("playing", video_id=VIDEOS[0])
    await owner.wait_playback("playing", video_id=VIDEOS[1], timeout=6)
    queue_events = [e for e in owner.events if e["type"] == "queue"]
    assert queue_events[-1]["data"] == []


async def test_a_player_reporting_the_end_advances_the_room(connect: Connect) -> None:
    owner = await connect()
    room = await new_room(owner)
    await owner.call("join", room=room)
    await owner.call("queue.add", {"video_id": VIDEOS[0]}, room=room)
    await owner.call("play", room=room)
    first = await owner.wait_playback("playing")
    await owner.call("ended", {"entry_id": first["entry_id"]}, room=room)
    await owner.wait_playback("idle")
    with pytest.raises(ReplyError) as err:
        await owner.call("play", room=room)
    assert err.value.code == "queue_empty"
