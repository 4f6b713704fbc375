"""The wire protocol's edges: tokens, bad frames, idempotent retries, the REST face."""

import asyncio
import time

import httpx
import orjson
import pytest
import websockets

from tests.support import rawsocket
from tests.support.client import ReplyError, WsClient
from tests.support.system import System

from .conftest import Connect, new_room

pytestmark = pytest.mark.e2e


async def test_socket_without_a_valid_token_is_refused(system: System) -> None:
    for query in ("", "?token=", "?token=not-a-jwt"):
        with pytest.raises(websockets.InvalidStatus) as err:
            await websockets.connect(f"{system.ws_url}{query}")
        assert err.value.response.status_code == 403


async def test_bad_frames_get_errors_and_the_socket_lives_on(connect: Connect) -> None:
    client = await connect()
    cases = [
        ("not json", None, "bad_frame"),
        ("[1, 2]", None, "bad_frame"),
        ('{"type": "play"}', None, "bad_frame"),
        ('{"id": "x1", "type": "no.such.thing"}', "x1", "unknown_type"),
        (
            '{"id": "x2", "type": "seek", "room": "abcdef", "data": {"position_ms": -5}}',
            "x2",
            "bad_request",
        ),
        (
            '{"id": "x3", "type": "seek", "room": "abcdef", "data": {"position_ms": 1e30}}',
            "x3",
            "bad_request",
        ),
        ('{"id": "x4", "type": "play", "room": "../../etc"}', "x4", "bad_request"),
        ('{"id": "x5", "type": "play", "room": "abcdef", "data": [1]}', "x5", "bad_request"),
        ('{"id": "x6", "type": "play", "room": "abcdef", "extra": 1}', "x6", "bad_frame"),
        (
            '{"id": "x7", "type": "queue.add", "room": "abcdef", "data": {"video_id": "a", "url": "b"}}',
            "x7",
            "bad_request",
        ),
        ('{"id": "x8", "type": "play"}', "x8", "bad_request"),
        ('{"id": "x9", "type": "play", "room": "zzzzzz"}', "x9", "not_found"),
        ('{"id": "x10", "type": "time.ping", "data": {"t0": "soon"}}', "x10", "bad_request"),
        ("x" * 20_000, None, "too_large"),
    ]
    for raw, request_id, code in cases:
        before = len(client.raw_replies)
        await client.send_raw(raw)
        for _ in range(100):
            if len(client.raw_replies) > before:
                break
            await asyncio.sleep(0.02)
        reply = client.raw_replies[before]
        assert reply["ok"] is False, raw[:60]
        assert reply["error"]["code"] == code, raw[:60]
        assert reply["re"] == request_id
        assert "Traceback" not in reply["error"]["message"]
    pong = await client.call("time.ping", {"t0": 123.5})
    assert pong["t0"] == 123.5 and pong["server_ms"] > 1e12


async def test_a_retried_command_is_applied_once(connect: Connect) -> None:
    owner = await connect()
    room = await new_room(owner)
    await owner.call("join", room=room)
    first = await owner.request(
        "queue.add", {"video_id": "dQw4w9WgXcQ"}, room=room, request_id="r-1"
    )
    again = await owner.request(
        "queue.add", {"video_id": "dQw4w9WgXcQ"}, room=room, request_id="r-1"
    )
    assert first["ok"] and again == first
    loaded = await owner.call("queue.load", room=room)
    assert len(loaded["queue"]) == 1
    # The same id for another command of that service is a conflict, not a silent replay.
    entry_id = first["data"]["entry"]["id"]
    other = await owner.request("queue.remove", {"entry_id": entry_id}, room=room, request_id="r-1")
    assert other["error"]["code"] == "conflict"


async def test_concurrent_retries_of_one_request_apply_once(
    system: System, connect: Connect
) -> None:
    """The same request sent at once over several sockets of one user (a retry racing the
    original across a reconnect) lands on different replicas and is applied once."""
    owner = await connect()
    room = await new_room(owner)
    await owner.call("join", room=room)
    token = owner.token  # type: ignore[attr-defined]
    sockets = [await WsClient.connect(system.ws_url, token) for _ in range(6)]
    try:
        replies = await asyncio.gather(
            *(
                s.request("queue.add", {"video_id": "9bZkp7q19f0"}, room=room, request_id="same")
                for s in sockets
            )
        )
    finally:
        for s in sockets:
            await s.close()
    assert all(r["ok"] for r in replies)
    assert len({r["data"]["entry"]["id"] for r in replies}) == 1
    assert len((await owner.call("queue.load", room=room))["queue"]) == 1


async def test_queue_add_accepts_urls_and_rejects_others(connect: Connect) -> None:
    owner = await connect()
    room = await new_room(owner)
    await owner.call("join", room=room)
    for url in (
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s",
        "https://youtu.be/dQw4w9WgXcQ",
        "youtube.com/shorts/dQw4w9WgXcQ",
    ):
        added = await owner.call("queue.add", {"url": url}, room=room)
        assert added["entry"]["video_id"] == "dQw4w9WgXcQ"
    for bad in ("https://vimeo.com/123", "https://youtube.com/watch?v=short", "nonsense"):
        with pytest.raises(ReplyError) as err:
            await owner.call("queue.add", {"url": bad}, room=room)
        assert err.value.code == "invalid_video"


async def test_guest_sign_in_and_me(system: System) -> None:
    async with httpx.AsyncClient(base_url=system.base_url) as http:
        signed = (await http.post("/auth/guest", json={"name": "  Ann\u0000 "})).json()
        assert signed["user"]["name"] == "Ann"
        me = await http.get("/auth/me", headers={"Authorization": f"Bearer {signed['token']}"})
        assert me.status_code == 200 and me.json()["id"] == signed["user"]["id"]
        assert (await http.get("/auth/me")).status_code == 401
        bad = await http.get("/auth/me", headers={"Authorization": "Bearer x.y.z"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"
        assert (await http.post("/auth/guest", json={"name": ""})).status_code == 400
        assert (await http.post("/auth/guest", content=b"{")).status_code == 400
        health = (await http.get("/api/health")).json()
        assert health["status"] == "ok"


async def test_slow_client_is_dropped_without_slowing_the_room(
    system: System, connect: Connect
) -> None:
    owner, fast = await connect(), await connect()
    room = await new_room(owner, control_mode="any")
    await owner.call("join", room=room)
    await fast.call("join", room=room)
    join = orjson.dumps({"id": "j", "type": "join", "room": room, "data": {}})
    slow = rawsocket.open_and_send(system.port, owner.token, join, rcvbuf=4096)  # type: ignore[attr-defined]
    try:
        # Queue events carry the whole queue: ~15 MB in all with long thumbnails, far more
        # than the kernel's socket buffers and the gateway's 1 MB per-socket buffer hold.
        thumb = "https://i.ytimg.com/" + "x" * 2000
        for _ in range(120):
            await owner.call(
                "queue.add", {"video_id": "dQw4w9WgXcQ", "thumbnail": thumb}, room=room
            )
        # The member who reads got every event, and in time.
        await fast.wait_for(lambda e: e["type"] == "queue" and len(e["data"]) == 120)
        # The stuck one was dropped: its stream ends (a close frame cannot reach a client that
        # reads nothing, so the gateway cuts the connection).
        slow.setblocking(False)
        received = bytearray()
        ended = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                chunk = slow.recv(1 << 20)
            except BlockingIOError:
                await asyncio.sleep(0.02)
                continue
            except ConnectionResetError:
                ended = True
                break
            if not chunk:
                ended = True
                break
            received += chunk
        assert ended
        assert len(received) < 15_000_000  # it did not get the whole room's traffic
    finally:
        slow.close()


async def test_client_sees_its_own_and_others_events_in_version_order(connect: Connect) -> None:
    a, b = await connect(), await connect()
    room = await new_room(a, control_mode="any")
    await a.call("join", room=room)
    await b.call("join", room=room)
    await asyncio.gather(
        *(a.call("queue.add", {"video_id": "dQw4w9WgXcQ"}, room=room) for _ in range(10)),
        *(b.call("queue.add", {"video_id": "9bZkp7q19f0"}, room=room) for _ in range(10)),
    )
    await a.wait_for(lambda e: e["type"] == "queue" and len(e["data"]) == 20)
    await b.wait_for(lambda e: e["type"] == "queue" and len(e["data"]) == 20)
    for client in (a, b):
        vs = [e["v"] for e in client.events]
        assert vs == sorted(vs) and len(vs) == len(set(vs))


async def test_no_token_reaches_the_logs(system: System, connect: Connect) -> None:
    client = await connect()
    await client.call("time.ping", {"t0": 1})
    token = client.token  # type: ignore[attr-defined]
    for process in system.processes:
        assert token.split(".")[2] not in process.log_path.read_text(errors="replace")
