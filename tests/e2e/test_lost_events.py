"""Events committed and never published do not stay lost (services/gateway/sequencecheck.py),
nor do eviction notices (services/rooms/outbox.py).

A service that dies between its commit and its publish leaves the room's version ahead of
every event anyone received, and in a quiet room no later event shows the gap. Here the
room's sequence is advanced in PostgreSQL, as such a commit leaves it, and a queue command
then times out (every queue replica stopped with SIGSTOP, resumed after): the gateway asks
rooms about the room's sequence, and every member gets a `resync` event after the lost
version (on which the JS client reads a snapshot). With no command at all, the gateway's
periodic sweep (every SEQUENCE_SWEEP_SECONDS, 1 s in the tests) finds the same gap."""

import asyncio
import os
import signal
import uuid

import psycopg
import pytest

from services.common.contracts import subjects
from services.common.contracts.envelope import EvictNotice
from services.common.jsonutil import now_ms
from tests.support.client import WsClient
from tests.support.system import System

from .conftest import Connect, new_room

pytestmark = pytest.mark.e2e


def advance_sequence(system: System, room: str) -> int:
    """What a commit whose events were never published leaves: the room's next version."""
    dsn = system.env["DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("UPDATE room_seq SET v = v + 1 WHERE room = %s RETURNING v", [room])
        (v,) = row.fetchone() or (None,)
    assert v is not None
    return int(v)


async def two_members(connect: Connect) -> tuple[WsClient, WsClient, str]:
    """An owner and a friend, both joined to the owner's new room."""
    owner, friend = await connect(), await connect()
    room = await new_room(owner)
    for client in (owner, friend):
        await client.call("join", room=room)
    return owner, friend, room


async def every_one_resyncs(clients: tuple[WsClient, ...], room: str, v: int) -> None:
    """Each client gets the `resync` that follows the lost events, as the room's event `v`."""
    for client in clients:
        resync = await client.wait_for(lambda e: e["type"] == "resync", timeout=15)
        assert resync == {"type": "resync", "room": room, "v": v, "data": {"reason": "events_lost"}}


async def test_members_resync_after_events_that_were_committed_and_never_published(
    system: System, connect: Connect
) -> None:
    owner, friend, room = await two_members(connect)
    lost = advance_sequence(system, room)

    queues = [p for p in system.processes if p.name.startswith("queue")]
    assert queues, "the system runs the queue service"
    for queue in queues:
        os.kill(queue.proc.pid, signal.SIGSTOP)
    try:
        reply = await owner.request("queue.add", {"video_id": "dQw4w9WgXcQ"}, room=room)
        assert reply["error"]["code"] == "timeout"
        await every_one_resyncs((owner, friend), room, lost + 1)
    finally:
        for queue in queues:
            os.kill(queue.proc.pid, signal.SIGCONT)
    # The queue, resumed, applies the command that timed out; its event follows the resync.
    for client in (owner, friend):
        added = await client.wait_for(lambda e: e["type"] == "queue", timeout=10)
        assert added["v"] == lost + 2


async def test_a_timeout_with_nothing_lost_brings_no_resync(
    system: System, connect: Connect
) -> None:
    owner = await connect()
    room = await new_room(owner)
    await owner.call("join", room=room)
    queues = [p for p in system.processes if p.name.startswith("queue")]
    for queue in queues:
        os.kill(queue.proc.pid, signal.SIGSTOP)
    try:
        reply = await owner.request("queue.add", {"video_id": "dQw4w9WgXcQ"}, room=room)
        assert reply["error"]["code"] == "timeout"
        await asyncio.sleep(2.0)  # the check runs 1 s after the timeout, and answers in ms
    finally:
        for queue in queues:
            os.kill(queue.proc.pid, signal.SIGCONT)
    assert [e for e in owner.events if e["type"] == "resync"] == []


async def test_a_gap_no_command_shows_is_found_by_the_sweep(
    system: System, connect: Connect
) -> None:
    """What rooms' start deadline or a janitor job leaves when its process dies between
    commit and publish: no command of the room ends in doubt, and the room stays quiet."""
    owner, friend, room = await two_members(connect)
    lost = advance_sequence(system, room)
    await every_one_resyncs((owner, friend), room, lost + 1)
    # The room goes on in one sequence after it.
    await owner.call("chat.send", {"text": "still here"}, room=room)
    for client in (owner, friend):
        said = await client.wait_for(lambda e: e["type"] == "chat", timeout=10)
        assert said["v"] == lost + 2


def close_room_silently(system: System, room: str) -> None:
    """What a replica that closed a room and died before its `evict` notice leaves: the
    room's rows and sequence deleted (as `repository.delete_room` does), no notice sent."""
    dsn = system.env["DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn) as conn:
        for table, column in (
            ("rooms_sessions", "room"),
            ("rooms_members", "room"),
            ("rooms_audit", "room"),
            ("rooms_rooms", "code"),
            ("room_seq", "room"),
        ):
            conn.execute(f"DELETE FROM {table} WHERE {column} = %s", [room])


async def test_the_sockets_of_a_room_closed_without_its_notice_leave_it(
    system: System, connect: Connect
) -> None:
    owner, friend, room = await two_members(connect)
    close_room_silently(system, room)
    for client in (owner, friend):
        evicted = await client.wait_for(lambda e: e["type"] == "evicted", timeout=15)
        assert evicted == {"type": "evicted", "room": room, "data": {"reason": "closed"}}
    reply = await friend.request("join", room=room)
    assert reply["error"]["code"] == "not_found"


def leave_a_kick_unsent(system: System, room: str, user_id: str) -> None:
    """What a rooms replica that committed a kick and died before publishing its `evict`
    notice leaves: the user's sessions and membership gone, and the notice in the outbox,
    written in the kick's transaction (services/rooms/outbox.py)."""
    dsn = system.env["DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "DELETE FROM rooms_sessions WHERE room = %s AND user_id = %s RETURNING conn",
            [room, user_id],
        )
        conns = [c for (c,) in rows]
        conn.execute("DELETE FROM rooms_members WHERE room = %s AND user_id = %s", [room, user_id])
        notice = EvictNotice(room=room, user_id=user_id, conns=conns, reason="kicked")
        conn.execute(
            "INSERT INTO rooms_outbox (id, subject, payload, created_ms) VALUES (%s, %s, %s, %s)",
            [
                uuid.uuid4().hex,
                subjects.gateway_notice("evict"),
                notice.model_dump_json(),
                now_ms(),
            ],
        )
    assert conns, "the user had a socket in the room"


async def test_a_kick_whose_replica_died_before_its_notice_still_evicts(
    system: System, connect: Connect
) -> None:
    owner, friend, room = await two_members(connect)
    leave_a_kick_unsent(system, room, friend.user["id"])  # type: ignore[attr-defined]
    # Another rooms replica's sweep sends the notice once it is 5 s old (outbox.GRACE_MS).
    evicted = await friend.wait_for(lambda e: e["type"] == "evicted", timeout=20)
    assert evicted == {"type": "evicted", "room": room, "data": {"reason": "kicked"}}
    # The kicked user's socket gets none of the room's events any more.
    await owner.call("chat.send", {"text": "after the kick"}, room=room)
    await owner.wait_for(lambda e: e["type"] == "chat", timeout=10)
    await asyncio.sleep(0.3)  # the same gateway writes to both sockets at once
    assert [e for e in friend.events if e.get("type") == "chat"] == []
