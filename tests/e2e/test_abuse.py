"""Abuse and bad input: rate limits per socket and per user, the socket's Origin check, size
and length limits, unicode edge cases, and tokens that expire while their socket is open.
The limits are exercised on the strict gateway (production-like settings); the main gateway
is lenient so other tests may drive it fast."""

import asyncio
import uuid
from typing import Any

import httpx
import orjson
import pytest
import websockets

from services.common import tokens
from services.common.contracts.commands import MAX_CHAT_TEXT
from services.common.contracts.models import UserRef
from tests.conftest import TEST_ENV
from tests.support.client import ReplyError, WsClient, guest
from tests.support.system import System

from .conftest import STRICT_ENV, Connect, StrictGateway, new_room

pytestmark = pytest.mark.e2e

BURST = int(STRICT_ENV["CONN_RATE_BURST"])
USER_BURST = int(STRICT_ENV["USER_RATE_BURST"])


async def _replies(client: WsClient, count: int, timeout: float = 10) -> list[dict[str, Any]]:
    for _ in range(int(timeout / 0.02)):
        if len(client.raw_replies) >= count:
            break
        await asyncio.sleep(0.02)
    return client.raw_replies[:count]


async def test_a_socket_over_its_rate_gets_rate_limited_and_lives_on(
    system: System, strict_gateway: StrictGateway
) -> None:
    token, _ = guest(system.base_url, "flooder")
    client = await WsClient.connect(strict_gateway.ws_url, token)
    try:
        await asyncio.sleep(0.5)
        client.raw_replies.clear()
        burst = 3 * BURST
        for n in range(burst):
            await client.send_raw(
                orjson.dumps({"id": f"p{n}", "type": "time.ping", "data": {"t0": n}})
            )
        # Garbage counts too: it is refused as rate limited, not parsed into an error.
        await client.send_raw("not json")
        replies = await _replies(client, burst + 1)
        codes = [r["error"]["code"] if not r["ok"] else "ok" for r in replies]
        assert codes.count("ok") >= BURST - 2  # the bucket may hold a little less than full
        assert codes.count("rate_limited") >= burst - BURST - 5
        assert set(codes) == {"ok", "rate_limited"}
        assert [r["re"] for r in replies[:burst]] == [f"p{n}" for n in range(burst)]
        await asyncio.sleep(1.0)  # 5 tokens a second: the socket may go on
        pong = await client.call("time.ping", {"t0": 1})
        assert pong["t0"] == 1
    finally:
        await client.close()


async def test_a_user_over_their_rate_across_sockets_gets_rate_limited(
    system: System, strict_gateway: StrictGateway
) -> None:
    token, _ = guest(system.base_url, "many-tabs")
    sockets = [await WsClient.connect(strict_gateway.ws_url, token) for _ in range(3)]
    try:
        # 3 sockets x 8 commands: within each socket's burst, over the user's.
        per_socket = 8
        assert per_socket < BURST and 3 * per_socket > USER_BURST
        replies = await asyncio.gather(
            *(
                s.request("room.create", {"name": f"tab {n}"})
                for s in sockets
                for n in range(per_socket)
            )
        )
        codes = [r["error"]["code"] if not r["ok"] else "ok" for r in replies]
        assert codes.count("rate_limited") >= 1, codes
        assert codes.count("ok") >= USER_BURST - 2, codes
        assert set(codes) <= {"ok", "rate_limited"}
    finally:
        for s in sockets:
            await s.close()


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # not a browser: tools, tests, apps
        ("https://portal.example", True),  # ALLOWED_ORIGINS
        ("chrome-extension://abcdefghijklmnopabcdefghijklmnop", True),  # the extension
        ("http://127.0.0.1:8000", True),  # BACKEND_BASE_URL
        ("https://evil.example", False),
        ("null", False),  # sandboxed frames, file:// pages
        ("https://portal.example.evil.example", False),
    ],
)
async def test_the_socket_checks_the_pages_origin(
    system: System, strict_gateway: StrictGateway, origin: str | None, allowed: bool
) -> None:
    token, _ = guest(system.base_url, "origin")
    url = f"{strict_gateway.ws_url}?token={token}"
    if allowed:
        async with websockets.connect(url, origin=origin) as ws:  # type: ignore[arg-type]
            await ws.send(orjson.dumps({"id": "o", "type": "time.ping", "data": {"t0": 1}}))
            assert orjson.loads(await ws.recv())["ok"]
    else:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url, origin=origin)  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403


async def test_the_gateways_own_pages_may_open_a_socket(
    system: System, strict_gateway: StrictGateway
) -> None:
    token, _ = guest(system.base_url, "portal")
    own = f"http://127.0.0.1:{strict_gateway.port}"
    async with websockets.connect(f"{strict_gateway.ws_url}?token={token}", origin=own) as ws:  # type: ignore[arg-type]
        await ws.send(orjson.dumps({"id": "o", "type": "time.ping", "data": {"t0": 1}}))
        assert orjson.loads(await ws.recv())["ok"]


async def test_a_frame_past_the_hard_limit_closes_the_socket(connect: Connect) -> None:
    client = await connect()
    await client.send_raw("x" * (1024 * 1024 + 1))
    code, _reason = await asyncio.wait_for(client.closed, 10)
    assert code == 1009


async def test_queue_length_name_and_text_limits(connect: Connect, system: System) -> None:
    owner = await connect()
    room = await new_room(owner, control_mode="any")
    await owner.call("join", room=room)
    # Names: 1-40 characters for people, 1-80 for rooms; visible characters required.
    async with httpx.AsyncClient(base_url=system.base_url, timeout=10) as http:
        for name in ("x" * 41, "", "\u0000\u0007\u202e", "   "):
            reply = await http.post("/auth/guest", json={"name": name})
            assert reply.status_code == 400, name
            assert reply.json()["error"]["code"] == "bad_request"
    with pytest.raises(ReplyError) as err:
        await owner.call("room.create", {"name": "r" * 81})
    assert err.value.code == "bad_request"
    # Chat: 1-1000 characters once control and bidi characters are gone.
    for text in ("y" * (MAX_CHAT_TEXT + 1), "\u202e\u2066\u0000", ""):
        with pytest.raises(ReplyError) as err:
            await owner.call("chat.send", {"text": text}, room=room)
        assert err.value.code == "bad_request"


async def test_the_queue_stops_at_its_length_limit(connect: Connect) -> None:
    owner = await connect()
    room = await new_room(owner, control_mode="any")
    await owner.call("join", room=room)
    limit = 200  # MAX_QUEUE_LENGTH's default
    for _ in range(limit // 10):  # 10 at a time: a socket may have 16 commands in flight
        await asyncio.gather(
            *(owner.call("queue.add", {"video_id": "dQw4w9WgXcQ"}, room=room) for _ in range(10))
        )
    with pytest.raises(ReplyError) as err:
        await owner.call("queue.add", {"video_id": "dQw4w9WgXcQ"}, room=room)
    assert err.value.code == "queue_full"


async def test_unicode_edge_cases_are_cleaned_not_crashed_on(connect: Connect) -> None:
    owner = await connect("Ann \u202eevil\u202c 👩‍👩‍👧 ")
    room = await new_room(owner)
    await owner.call("join", room=room)
    cases = {
        "zero width joiner emoji 👩‍👩‍👧 stays": "zero width joiner emoji 👩‍👩‍👧 stays",
        "bidi \u202egone\u202c and \u2067isolates\u2069": "bidi gone and isolates",
        "line\nbreaks\nstay\u0000\u0007": "line\nbreaks\nstay",
        "combining e\u0301\u0301\u0301 and 𝕦𝕟𝕚𝕔𝕠𝕕𝕖": "combining e\u0301\u0301\u0301 and 𝕦𝕟𝕚𝕔𝕠𝕕𝕖",
    }
    for sent, kept in cases.items():
        message = (await owner.call("chat.send", {"text": sent}, room=room))["message"]
        assert message["text"] == kept
    # Escaped lone surrogates are not valid JSON text for us: a bad frame, not a crash.
    frame = '{"id": "s1", "type": "chat.send", "room": "ROOM", "data": {"text": "\\ud800"}}'
    await owner.send_raw(frame.replace("ROOM", room))
    reply = await _replies(owner, len(owner.raw_replies) + 1)
    assert reply[-1]["ok"] is False and reply[-1]["error"]["code"] == "bad_frame"


async def test_a_socket_is_closed_when_its_token_expires(system: System) -> None:
    user = UserRef(id=uuid.uuid4().hex, name="short-lived")
    token = tokens.issue(TEST_ENV["JWT_SECRET"], user, expires_s=2)
    client = await WsClient.connect(system.ws_url, token)
    try:
        assert (await client.call("time.ping", {"t0": 1}))["t0"] == 1
        code, reason = await asyncio.wait_for(client.closed, 15)
        assert code == 4001 and "expired" in reason
    finally:
        await client.close()
