"""The permission matrix against the real system: every room command, sent by every kind of
caller (owner, operator, member, outsider, banned, admin), in every control mode, must be
allowed or refused exactly as tests/support/permission_table.py says.

"Allowed" means the owning service let the command through its permission check: the reply
is ok or an error about the room's state (`bad_state`, `queue_empty`, ...), never `forbidden`
or `not_member`. One room per mode; commands that change who is who are undone after each
allowed call, so every row starts from the same cast. A command that ends the room
(`room.close`) cannot be undone: each caller sends it to a room of its own, seated like the
shared one.
"""

from typing import Any

import pytest

from tests.support.admin import connect_admin
from tests.support.client import WsClient
from tests.support.permission_table import ACTORS, ALLOWED, MODES, expected
from tests.support.system import System

from .conftest import Connect, new_room

pytestmark = pytest.mark.e2e

VIDEO = "dQw4w9WgXcQ"
AUTHZ_CODES = ("forbidden", "not_member")
ROOM_ENDING = frozenset({"room.close"})


class Cast:
    def __init__(self, clients: dict[str, WsClient], target: WsClient, mode: str) -> None:
        self.clients = clients
        self.target = target
        self.mode = mode
        self.room = ""

    async def seat(self) -> str:
        """A new room in the cast's mode with everyone in their place: the owner, an
        operator, a member, a banned user, the admin and the target joined."""
        owner = self.clients["owner"]
        room = await new_room(owner, control_mode=self.mode)
        # No ad-sync: an allowed ad report then changes nothing the next rows depend on.
        await owner.call("room.settings", {"ad_sync": "off"}, room=room)
        for name in ("owner", "operator", "member", "admin"):
            await self.clients[name].call("join", {"player": True}, room=room)
        await self.target.call("join", {"player": True}, room=room)
        operator_id = self.id_of(self.clients["operator"])
        await owner.call("room.role", {"user_id": operator_id, "role": "operator"}, room=room)
        await owner.call("room.ban", {"user_id": self.id_of(self.clients["banned"])}, room=room)
        return room

    def id_of(self, client: WsClient) -> str:
        return client.user["id"]  # type: ignore[attr-defined]

    async def data_for(self, command: str) -> dict[str, Any]:
        """Valid data for the command; entries to remove or move are someone else's."""
        target_id = self.id_of(self.target)
        if command in ("queue.remove", "queue.move"):
            added = await self.target.call("queue.add", {"video_id": VIDEO}, room=self.room)
            entry_id = added["entry"]["id"]
            return {"entry_id": entry_id} | ({"index": 0} if command == "queue.move" else {})
        return {
            "join": {"player": True},
            "room.settings": {"name": "matrix"},
            "seek": {"position_ms": 0},
            "rate": {"rate": 1.0},
            "ready": {"entry_id": "not-current"},
            "ended": {"entry_id": "not-current"},
            "queue.add": {"video_id": VIDEO},
            "room.role": {"user_id": target_id, "role": "operator"},
            "room.transfer": {"user_id": target_id},
            "room.kick": {"user_id": target_id},
            "room.ban": {"user_id": target_id, "banned": True},
            "room.audit": {"limit": 5},
        }.get(command, {})

    async def undo(self, command: str, actor: str) -> None:
        """Put the cast back after an allowed command that changed it."""
        owner, target, room = self.clients["owner"], self.target, self.room
        target_id = self.id_of(target)
        if command == "join" and actor == "outsider":
            await owner.call("room.kick", {"user_id": self.id_of(self.clients[actor])}, room=room)
        elif command == "leave" and actor not in ("outsider", "banned"):
            await self.clients[actor].call("join", {"player": True}, room=room)
        elif command == "room.kick":
            await target.call("join", {"player": True}, room=room)
        elif command == "room.ban":
            await owner.call("room.ban", {"user_id": target_id, "banned": False}, room=room)
            await target.call("join", {"player": True}, room=room)
        elif command == "room.role":
            await owner.call("room.role", {"user_id": target_id, "role": "member"}, room=room)
        elif command == "room.transfer":
            # The target hands it back; the owner's stand-in role (operator) goes with it.
            await target.call("room.transfer", {"user_id": self.id_of(owner)}, room=room)
            await owner.call("room.role", {"user_id": target_id, "role": "member"}, room=room)


async def _cast(connect: Connect, system: System, mode: str) -> Cast:
    clients = {
        name: await connect(name) for name in ("owner", "operator", "member", "outsider", "banned")
    }
    clients["admin"] = await connect_admin(system.ws_url)
    cast = Cast(clients, await connect("target"), mode)
    cast.room = await cast.seat()
    return cast


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mode", MODES)
async def test_every_command_by_every_caller(connect: Connect, system: System, mode: str) -> None:
    cast = await _cast(connect, system, mode)
    try:
        mismatches = []
        for command in sorted(ALLOWED):
            for actor in ACTORS:
                data = await cast.data_for(command)
                room = await cast.seat() if command in ROOM_ENDING else cast.room
                reply = await cast.clients[actor].request(command, data, room=room)
                code = None if reply["ok"] else reply["error"]["code"]
                got = code if code in AUTHZ_CODES else None
                want = expected(command, actor, mode)
                if got != want:
                    mismatches.append((command, actor, want, code))
                if got is None and command not in ROOM_ENDING:
                    await cast.undo(command, actor)
        assert not mismatches, f"(command, caller, expected, got) in {mode}: {mismatches}"
    finally:
        await cast.clients["admin"].close()
