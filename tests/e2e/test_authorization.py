"""Authorization from the outside in: tokens that must not open a socket, every client command
by callers it must refuse (and the room unchanged after), and the services' internal commands
(the janitor's among them) refused to any user who reaches the bus.

The full matrix of who may do what in which control mode is tests/e2e/test_permission_matrix.py;
this file makes sure the refusals leave nothing behind.
"""

import base64
import time
import uuid
from typing import Any

import httpx
import jwt
import nats
import orjson
import pytest
import websockets

from services.auth.google import GoogleConfig, GoogleSignIn
from services.auth.handlers import build_router as auth_router
from services.auth.service import AuthService
from services.chat.handlers import build_router as chat_router
from services.chat.service import ChatService
from services.common import tokens
from services.common.bus import SERVICE_USER_PREFIX, CommandRouter
from services.common.contracts import subjects
from services.common.contracts.commands import ROUTES
from services.queue.handlers import build_router as queue_router
from services.queue.service import QueueService
from services.rooms.handlers import build_router as rooms_router
from services.rooms.service import RoomsService
from tests.conftest import TEST_ENV
from tests.support.client import WsClient
from tests.support.permission_table import ALLOWED, expected
from tests.support.system import System

from .conftest import Connect, new_room

pytestmark = pytest.mark.e2e

SECRET = TEST_ENV["JWT_SECRET"]
VIDEO = "dQw4w9WgXcQ"


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": tokens.ISSUER,
        "sub": uuid.uuid4().hex,
        "name": "mallory",
        "adm": False,
        "sid": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 3600,
    }
    return {**claims, **over}


def _tampered() -> str:
    """A valid token whose payload was edited to claim admin; the signature is the old one."""
    token = jwt.encode(_claims(), SECRET, algorithm="HS256")
    head, _payload, signature = token.split(".")
    forged = base64.urlsafe_b64encode(orjson.dumps(_claims(adm=True))).rstrip(b"=").decode()
    return f"{head}.{forged}.{signature}"


BAD_TOKENS = {
    "expired": lambda: jwt.encode(_claims(exp=int(time.time()) - 10), SECRET, algorithm="HS256"),
    "tampered": _tampered,
    "foreign-signed": lambda: jwt.encode(_claims(), "another-secret-" + "x" * 32, "HS256"),
    "alg none": lambda: jwt.encode(_claims(adm=True), None, algorithm="none"),
    "other issuer": lambda: jwt.encode(_claims(iss="someone-else"), SECRET, algorithm="HS256"),
    "no session": lambda: jwt.encode(
        {k: v for k, v in _claims().items() if k != "sid"}, SECRET, algorithm="HS256"
    ),
    "service user": lambda: jwt.encode(_claims(sub=f"{SERVICE_USER_PREFIX}x"), "nope" * 9, "HS256"),
    "garbage": lambda: "a.b.c",
}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_bad_tokens_open_no_socket_and_no_rest_call(system: System, kind: str) -> None:
    token = BAD_TOKENS[kind]()
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(f"{system.ws_url}?token={token}")
    assert refused.value.response.status_code == 403
    async with httpx.AsyncClient(base_url=system.base_url, timeout=10) as http:
        me = await http.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401
        assert me.json()["error"]["code"] == "unauthorized"


async def test_a_signed_out_token_opens_no_socket(connect: Connect, system: System) -> None:
    client = await connect()
    token = client.token  # type: ignore[attr-defined]
    async with httpx.AsyncClient(base_url=system.base_url, timeout=10) as http:
        out = await http.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})
        assert out.status_code == 204
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(f"{system.ws_url}?token={token}")


def _data_for(command: str, target_id: str, entry_id: str, message_id: str) -> dict[str, Any]:
    """Valid data, so a refusal is about who asks, never about what."""
    return {
        "room.settings": {"name": "taken over"},
        "seek": {"position_ms": 1000},
        "ready": {"entry_id": entry_id},
        "ended": {"entry_id": entry_id},
        "queue.add": {"video_id": VIDEO},
        "queue.remove": {"entry_id": entry_id},
        "queue.move": {"entry_id": entry_id, "index": 0},
        "chat.send": {"text": "hello"},
        "chat.history": {"limit": 5},
        "chat.delete": {"message_id": message_id},
        "room.role": {"user_id": target_id, "role": "operator"},
        "room.transfer": {"user_id": target_id},
        "room.kick": {"user_id": target_id},
        "room.ban": {"user_id": target_id, "banned": True},
        "room.audit": {"limit": 5},
        "rate": {"rate": 1.5},
        "ad.start": {"entry_id": entry_id},
        "ad.end": {"entry_id": entry_id},
    }.get(command, {})


# Chat is not in the room permission table: members send and read, moderators delete.
_CHAT = {
    "chat.send": {"member"},
    "chat.history": {"member"},
    "chat.delete": set(),  # another's message: owners and operators only
}


# Site admins only (the dashboard), whoever else asks, in whatever room.
_ADMIN_ONLY = frozenset({"admin.rooms"})


def _refusal(command: str, actor: str) -> str | None:
    """The code this actor must get in an owner_only room; None when allowed."""
    if command in _ADMIN_ONLY:
        return "forbidden"
    if command in ALLOWED:
        return expected(command, actor, "owner_only")
    if command in _CHAT:
        if actor in _CHAT[command]:
            return None
        return {"outsider": "not_member", "banned": "forbidden"}.get(actor, "forbidden")
    raise AssertionError(f"{command}: who may send it? add it to this test")


async def _state(owner: WsClient, room: str) -> dict[str, Any]:
    snapshot = await owner.call("room.sync", room=room)
    audit = await owner.call("room.audit", {"limit": 200}, room=room)
    return {"snapshot": snapshot, "audit": audit["entries"]}


@pytest.mark.parametrize("actor", ["outsider", "banned", "member"])
async def test_every_command_refused_to_those_it_is_not_for_changes_nothing(
    connect: Connect, actor: str
) -> None:
    owner, target, caller = await connect("owner"), await connect("target"), await connect(actor)
    room = await new_room(owner)  # owner_only: members may not control playback
    await owner.call("room.settings", {"ad_sync": "off"}, room=room)
    await owner.call("join", {"player": True}, room=room)
    await target.call("join", {"player": True}, room=room)
    entry_id = (await owner.call("queue.add", {"video_id": VIDEO}, room=room))["entry"]["id"]
    message_id = (await owner.call("chat.send", {"text": "mine"}, room=room))["message"]["id"]
    if actor in ("member", "banned"):
        await caller.call("join", room=room)
    if actor == "banned":
        await owner.call("room.ban", {"user_id": caller.user["id"]}, room=room)  # type: ignore[attr-defined]
    before = await _state(owner, room)
    tried = []
    for command in sorted(set(ROUTES) - {"room.create", "join", "leave"}):
        want = _refusal(command, actor)
        if want is None:
            continue  # allowed for this caller (e.g. a member's chat.send): not this test's
        data = _data_for(command, target.user["id"], entry_id, message_id)  # type: ignore[attr-defined]
        reply = await caller.request(command, data, room=room)
        assert not reply["ok"], (command, reply)
        assert reply["error"]["code"] == want, (command, reply["error"])
        tried.append(command)
    assert len(tried) >= (15 if actor == "member" else 25), tried
    after = await _state(owner, room)
    assert after == before, "a refused command changed the room"


def _internal_commands() -> dict[str, frozenset[str]]:
    """Each service's internal commands, read from its real router."""
    google = GoogleSignIn(None, None, None, GoogleConfig("s", 1, "http://x", [], frozenset(), 1))  # type: ignore[arg-type]
    routers: list[CommandRouter] = [
        rooms_router(RoomsService(None, None, None)),  # type: ignore[arg-type]
        queue_router(QueueService(None, None, 1)),  # type: ignore[arg-type]
        chat_router(ChatService(None, None, None)),  # type: ignore[arg-type]
        auth_router(AuthService(None, None, None, "s", 1), google),  # type: ignore[arg-type]
    ]
    return {r.service: r.internal_names for r in routers}


async def test_internal_commands_refuse_users_even_on_the_bus(
    system: System, connect: Connect
) -> None:
    """Services trust no caller: a user's envelope on an internal subject (the janitor's
    deletes among them) is refused before its data is even read."""
    owner = await connect()
    room = await new_room(owner)
    internal = _internal_commands()
    assert {"presence_sweep", "close_idle", "retention"} <= internal["rooms"]
    assert "retention" in internal["auth"] and "purge_orphans" in internal["chat"]
    nc = await nats.connect(system.env["NATS_URL"])
    try:
        for service, names in internal.items():
            for name in sorted(names):
                envelope = {
                    "id": uuid.uuid4().hex,
                    "user": {"id": owner.user["id"], "name": "owner", "admin": True},  # type: ignore[attr-defined]
                    "room": room,
                    "data": {"kind": "guests", "before_ms": 2**62, "empty_before_ms": 2**62},
                }
                msg = await nc.request(
                    subjects.command(service, name), orjson.dumps(envelope), timeout=5
                )
                reply = orjson.loads(msg.data)
                assert reply == {
                    "ok": False,
                    "error": {"code": "forbidden", "message": reply["error"]["message"]},
                }, (service, name, reply)
    finally:
        await nc.close()
    # And the room is still there.
    assert (await owner.call("join", room=room))["room"]["code"] == room
