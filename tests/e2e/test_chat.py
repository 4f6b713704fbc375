"""Chat end to end: send, history, limits, rate limit, moderation, the join snapshot, and
durability across a crash of the chat service and a restart of the whole system."""

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.common import devstack
from services.common.contracts.commands import MAX_CHAT_TEXT, SNAPSHOT_CHAT_MESSAGES
from tests.conftest import TEST_ENV, make_system
from tests.support.admin import connect_admin
from tests.support.client import ReplyError, WsClient, apply_event, apply_snapshot, guest
from tests.support.system import System

from .conftest import Connect, new_room
from .test_consistency import Follower

pytestmark = pytest.mark.e2e

RATE_LIMIT = int(TEST_ENV["CHAT_RATE_LIMIT_MESSAGES"])


def uid(client: WsClient) -> str:
    return client.user["id"]  # type: ignore[attr-defined,no-any-return]


async def say(client: WsClient, room: str, text: str, **kw: Any) -> dict[str, Any]:
    return (await client.call("chat.send", {"text": text}, room=room, **kw))["message"]


async def refused(client: WsClient, command: str, data: dict[str, Any], room: str) -> str:
    with pytest.raises(ReplyError) as err:
        await client.call(command, data, room=room)
    return err.value.code


def chat_events(client: WsClient, room: str) -> list[dict[str, Any]]:
    return [e for e in client.events if e["type"] == "chat" and e["room"] == room]


async def room_with(connect: Connect, members: int = 1) -> tuple[str, list[WsClient]]:
    clients = [await connect() for _ in range(members)]
    room = await new_room(clients[0])
    for client in clients:
        await client.call("join", room=room)
    return room, clients


async def test_a_message_is_acknowledged_published_and_kept(connect: Connect) -> None:
    room, (ann, bob) = await room_with(connect, 2)
    reply = await ann.call("chat.send", {"text": "hello 👋"}, room=room)
    message = reply["message"]
    assert set(message) == {"id", "user_id", "name", "text", "at_ms"}
    assert (message["user_id"], message["name"], message["text"]) == (
        uid(ann),
        ann.name,
        "hello 👋",
    )
    event = await bob.wait_for(lambda e: e["type"] == "chat" and e["room"] == room)
    assert event["data"] == message
    history = await bob.call("chat.history", room=room)
    assert history["messages"] == [message]
    assert history["has_more"] is False
    assert history["versions"]["chat"] == event["v"]


async def test_text_is_cleaned_and_limited(connect: Connect) -> None:
    room, (ann,) = await room_with(connect)
    family = "👨\u200d👩\u200d👧"  # zero-width joiners make one emoji: they stay
    cleaned = await say(ann, room, f"  \x00hi\u202e there\x07 {family}\n  ")
    assert cleaned["text"] == f"hi there {family}"
    assert (await say(ann, room, "two\nlines"))["text"] == "two\nlines"
    assert len((await say(ann, room, "é" * MAX_CHAT_TEXT))["text"]) == MAX_CHAT_TEXT
    for bad in ("", "   ", "\x00\x01\u202e", "x" * (MAX_CHAT_TEXT + 1)):
        assert await refused(ann, "chat.send", {"text": bad}, room) == "bad_request"
    assert await refused(ann, "chat.send", {}, room) == "bad_request"
    assert await refused(ann, "chat.send", {"text": "hi", "html": "<b>"}, room) == "bad_request"


async def test_history_pages_newest_first_and_the_join_snapshot_has_the_last_50(
    connect: Connect,
) -> None:
    room, talkers = await room_with(connect, 4)
    sent = []
    for i in range(60):  # 15 each: under the test rate limit
        sent.append(await say(talkers[i % 4], room, f"message {i}"))
    newest_first = sent[::-1]
    pages, before = [], None
    while True:
        data = {"limit": 25} if before is None else {"limit": 25, "before_id": before}
        page = await talkers[1].call("chat.history", data, room=room)
        pages.append(page)
        if not page["has_more"]:
            break
        before = page["messages"][-1]["id"]
    assert [len(p["messages"]) for p in pages] == [25, 25, 10]
    assert [m for p in pages for m in p["messages"]] == newest_first
    default = await talkers[2].call("chat.history", room=room)
    assert default["messages"] == newest_first[:SNAPSHOT_CHAT_MESSAGES]
    largest = await talkers[2].call("chat.history", {"limit": 100}, room=room)
    assert largest["messages"] == newest_first and largest["has_more"] is False
    # The snapshot reads down: the last 50, oldest first, at the chat's version.
    late = await connect()
    snapshot = await late.call("join", room=room)
    assert snapshot["chat"] == sent[-SNAPSHOT_CHAT_MESSAGES:]
    assert snapshot["versions"]["chat"] == default["versions"]["chat"]
    for bad in ({"limit": 0}, {"limit": 101}, {"before_id": ""}, {"after_id": "x"}):
        assert await refused(late, "chat.history", bad, room) == "bad_request"
    assert await refused(late, "chat.history", {"before_id": "nope"}, room) == "not_found"


async def test_only_members_chat(connect: Connect) -> None:
    room, (ann,) = await room_with(connect)
    await say(ann, room, "members only")
    stranger = await connect()
    assert await refused(stranger, "chat.send", {"text": "hi"}, room) == "not_member"
    assert await refused(stranger, "chat.history", {}, room) == "not_member"
    assert await refused(ann, "chat.send", {"text": "hi"}, "zzzzzz") == "not_found"


async def test_a_retried_send_is_applied_once(system: System, connect: Connect) -> None:
    room, (ann, bob) = await room_with(connect, 2)
    first = await ann.request("chat.send", {"text": "once"}, room=room, request_id="c-1")
    again = await ann.request("chat.send", {"text": "once"}, room=room, request_id="c-1")
    assert first["ok"] and again == first
    # The same request racing itself over several sockets (a retry across a reconnect).
    sockets = [await WsClient.connect(system.ws_url, ann.token) for _ in range(4)]  # type: ignore[attr-defined]
    try:
        raced = await asyncio.gather(
            *(
                s.request("chat.send", {"text": "raced"}, room=room, request_id="c-2")
                for s in sockets
            )
        )
    finally:
        for s in sockets:
            await s.close()
    assert all(r["ok"] for r in raced) and len({r["data"]["message"]["id"] for r in raced}) == 1
    history = await bob.call("chat.history", room=room)
    assert [m["text"] for m in history["messages"]] == ["raced", "once"]
    other = await ann.request("chat.delete", {"message_id": "x"}, room=room, request_id="c-1")
    assert other["error"]["code"] == "conflict"


async def test_the_rate_limit_holds_back_one_sender_only(connect: Connect) -> None:
    room, (ann, bob) = await room_with(connect, 2)
    acknowledged = []
    for i in range(RATE_LIMIT):
        reply = await ann.request("chat.send", {"text": f"{i}"}, room=room, request_id=f"r-{i}")
        assert reply["ok"], reply
        acknowledged.append(reply)
    with pytest.raises(ReplyError) as err:
        await ann.call("chat.send", {"text": "one too many"}, room=room)
    assert err.value.code == "rate_limited"
    assert "wait" in err.value.message
    # A retry of an acknowledged message is its first answer, not a new message.
    assert (
        await ann.request("chat.send", {"text": "0"}, room=room, request_id="r-0")
        == acknowledged[0]
    )
    await say(bob, room, "others still talk")
    texts = [m["text"] for m in (await bob.call("chat.history", room=room))["messages"]]
    assert "one too many" not in texts and len(texts) == RATE_LIMIT + 1


async def test_owners_operators_and_admins_delete_messages_and_everyone_drops_them(
    system: System, connect: Connect
) -> None:
    room, (owner, op, ann) = await room_with(connect, 3)
    await owner.call("room.role", {"user_id": uid(op), "role": "operator"}, room=room)
    messages = [await say(ann, room, f"spam {i}") for i in range(4)]
    follower = Follower(ann, await ann.call("room.sync", room=room))
    admin = await connect_admin(system.ws_url)
    try:
        assert await refused(ann, "chat.delete", {"message_id": messages[0]["id"]}, room) == (
            "forbidden"
        )
        deleted = await owner.call("chat.delete", {"message_id": messages[0]["id"]}, room=room)
        assert deleted == {"deleted": messages[0]["id"]}
        await op.call("chat.delete", {"message_id": messages[1]["id"]}, room=room)
        await admin.call(
            "chat.delete", {"message_id": messages[2]["id"]}, room=room
        )  # not a member
    finally:
        await admin.close()
    event = await ann.wait_for(
        lambda e: e["type"] == "chat" and e["data"] == {"deleted": messages[2]["id"]}
    )
    assert event["room"] == room
    fresh = await ann.call("room.sync", room=room)
    assert fresh["chat"] == [messages[3]]
    await follower.settled_against(fresh)  # the reducer dropped exactly those three
    assert await refused(owner, "chat.delete", {"message_id": messages[0]["id"]}, room) == (
        "not_found"
    )
    assert await refused(owner, "chat.delete", {"message_id": "nope"}, room) == "not_found"
    history = await owner.call("chat.history", room=room)
    assert history["messages"] == [messages[3]]


async def test_snapshot_plus_chat_events_equals_a_fresh_snapshot(connect: Connect) -> None:
    room, (owner, ann, bob) = await room_with(connect, 3)
    follower = Follower(bob, await bob.call("room.sync", room=room))
    sent = []
    for i in range(12):
        sent.append(await say(ann if i % 2 else owner, room, f"line {i}"))
        if i % 4 == 3:
            await owner.call("chat.delete", {"message_id": sent[i - 1]["id"]}, room=room)
        if i == 6:
            await owner.call("queue.add", {"video_id": "dQw4w9WgXcQ"}, room=room)
        await follower.settled_against(await owner.call("room.sync", room=room))
    vs = follower.versions_seen
    assert vs == sorted(vs) and len(vs) == len(set(vs))
    # A newcomer's snapshot agrees with what the follower built from events.
    late = await connect()
    await follower.settled_against(await late.call("join", room=room))


async def test_concurrent_senders_on_two_replicas_lose_no_message(connect: Connect) -> None:
    room, clients = await room_with(connect, 4)
    watcher = clients[0]
    state = apply_snapshot(await watcher.call("room.sync", room=room))
    seen = len(watcher.events)

    async def talk(i: int, client: WsClient) -> list[str]:
        return [(await say(client, room, f"{i}-{n}"))["id"] for n in range(10)]

    sent = await asyncio.gather(*(talk(i, c) for i, c in enumerate(clients)))
    every = {message_id for ids in sent for message_id in ids}
    history = await watcher.call("chat.history", {"limit": 100}, room=room)
    assert {m["id"] for m in history["messages"]} == every
    await watcher.wait_for(lambda _e: len(chat_events(watcher, room)) >= 40)
    events = chat_events(watcher, room)
    assert [e["v"] for e in events] == sorted({e["v"] for e in events})
    for event in watcher.events[seen:]:
        state = apply_event(state, event)
    assert {m["id"] for m in state["parts"]["chat"]} == every


# -- durability -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def durable(infra: dict[str, str], workdir: Path) -> Iterator[System]:
    """A system of its own (its own bus, the session's database) to crash and restart."""
    nats, nats_url = devstack.start_nats(workdir / "nats-durable")
    system = make_system({**infra, "NATS_URL": nats_url}, workdir, "durable")
    try:
        yield system.start({"auth": 1, "rooms": 1, "queue": 1, "chat": 1, "gateway": 1})
    finally:
        system.stop()
        nats.stop()


async def until_ok(call: Callable[[], Awaitable[dict[str, Any]]], timeout: float = 60) -> Any:
    """Retry while the service is coming back (`unavailable` / `timeout`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        reply = await call()
        if reply["ok"] or loop.time() > deadline:
            assert reply["ok"], reply
            return reply["data"]
        assert reply["error"]["code"] in ("unavailable", "timeout"), reply
        await asyncio.sleep(0.2)


def running(system: System, name: str) -> list[Any]:
    return [p for p in system.processes if p.name.startswith(name) and p.proc.poll() is None]


async def test_an_acknowledged_message_survives_a_crash_of_the_chat_service(
    durable: System,
) -> None:
    token, _user = guest(durable.base_url, "Durable Dora")
    client = await WsClient.connect(durable.ws_url, token)
    try:
        room = (await client.call("room.create", {}))["room"]["code"]
        await client.call("join", room=room)
        message = await say(client, room, "written before the crash")
        for chat in running(durable, "chat"):
            os.kill(chat.proc.pid, signal.SIGKILL)  # no shutdown, no flush: kill -9
            chat.proc.wait(10)
        assert not running(durable, "chat")
        durable.start_service("chat")
        history = await until_ok(lambda: client.request("chat.history", room=room))
        assert message in history["messages"]
        again = await until_ok(lambda: client.request("room.sync", room=room))
        assert message in again["chat"]
    finally:
        await client.close()


async def test_acknowledged_messages_survive_a_restart_of_the_whole_system(
    durable: System,
) -> None:
    token, _user = guest(durable.base_url, "Patient Pat")
    client = await WsClient.connect(durable.ws_url, token)
    try:
        room = (await client.call("room.create", {}))["room"]["code"]
        await client.call("join", room=room)
        sent = [await say(client, room, f"before the restart {i}") for i in range(3)]
    finally:
        await client.close()
    durable.stop()  # every service process, the gateway first (SIGTERM)
    assert not running(durable, "")
    durable.processes.clear()
    durable.start({"auth": 1, "rooms": 1, "queue": 1, "chat": 1, "gateway": 1})
    client = await WsClient.connect(durable.ws_url, token)  # the same token still works
    try:
        snapshot = await until_ok(lambda: client.request("join", room=room))
        assert snapshot["chat"] == sent
        history = await client.call("chat.history", room=room)
        assert history["messages"] == sent[::-1]
        assert (await say(client, room, "and after"))["text"] == "and after"
    finally:
        await client.close()
