"""Roles and moderation: grant / revoke operator, transfer ownership, kick, ban, close the
room, the audit.

Each command runs like every other room change (`RoomsService.in_room`): authorised by the
permission matrix, applied under the room's lock with its audit row, its `members` event
published after commit. Kicked and banned users' sockets are evicted by every gateway, and so
is every socket in a closed room.
"""

from typing import Any

from services.common.contracts.commands import (
    AuditQuery,
    BanChange,
    NoData,
    RoleChange,
    TargetUser,
)
from services.common.contracts.envelope import CommandEnvelope
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.jsonutil import now_ms

from . import repository as repo
from .permissions import can_moderate
from .service import RoomsService, room_of
from .transaction import RoomTx

_NOT_A_MEMBER = "That user is not a member of this room."


class Moderation:
    def __init__(self, rooms: RoomsService) -> None:
        self.rooms = rooms

    async def set_role(self, env: CommandEnvelope, data: RoleChange) -> dict[str, Any]:
        async def body(tx: RoomTx) -> dict[str, Any]:
            await self.rooms.authorize(tx, env.user, "room.role")
            target = await tx.standing_of(data.user_id)
            if target == "owner":
                raise ServiceError(ErrorCode.BAD_REQUEST, "The owner's role moves by transfer.")
            if target not in ("operator", "member"):
                raise ServiceError(ErrorCode.NOT_FOUND, _NOT_A_MEMBER)
            if target != data.role:
                await repo.set_role(tx.conn, tx.code, data.user_id, data.role)
                tx.members_changed(data.user_id)
            await tx.audit(env.user, "room.role", data.user_id, {"role": data.role})
            return {}

        return await self.rooms.in_room(env, room_of(env), "room.role", body)

    async def transfer(self, env: CommandEnvelope, data: TargetUser) -> dict[str, Any]:
        """The target becomes the owner; the former owner stays on as an operator."""

        async def body(tx: RoomTx) -> dict[str, Any]:
            await self.rooms.authorize(tx, env.user, "room.transfer")
            target = await tx.standing_of(data.user_id)
            if target == "owner":
                return {}
            if target not in ("operator", "member"):
                raise ServiceError(ErrorCode.NOT_FOUND, _NOT_A_MEMBER)
            former = tx.row.owner_id
            await repo.set_owner(tx.conn, tx.code, data.user_id)
            await repo.set_role(tx.conn, tx.code, data.user_id, "owner")
            await repo.set_role(tx.conn, tx.code, former, "operator")
            tx.members_changed(data.user_id, former)
            await tx.audit(env.user, "room.transfer", data.user_id, {"from": former})
            return {}

        return await self.rooms.in_room(env, room_of(env), "room.transfer", body)

    async def kick(self, env: CommandEnvelope, data: TargetUser) -> dict[str, Any]:
        """Out of the room now (membership and sessions gone); they may join again."""

        async def body(tx: RoomTx) -> dict[str, Any]:
            actor = await self.rooms.authorize(tx, env.user, "room.kick")
            target = await tx.standing_of(data.user_id)
            if target in ("outsider", "banned"):
                raise ServiceError(ErrorCode.NOT_FOUND, _NOT_A_MEMBER)
            if not can_moderate(actor, target, env.user.admin):
                raise ServiceError(ErrorCode.FORBIDDEN, "You may not kick that member.")
            conns = await repo.sessions_of(tx.conn, tx.code, data.user_id)
            await repo.remove_sessions(tx.conn, tx.code, user_id=data.user_id)
            await repo.delete_membership(tx.conn, tx.code, data.user_id)
            tx.members_changed(data.user_id)
            await self.rooms.forget_conns(tx, conns)
            tx.evict(data.user_id, conns, "kicked")
            await tx.audit(env.user, "room.kick", data.user_id)
            return {}

        return await self.rooms.in_room(env, room_of(env), "room.kick", body)

    async def ban(self, env: CommandEnvelope, data: BanChange) -> dict[str, Any]:
        """Ban (also someone who never joined, by user id) or lift a ban."""

        async def body(tx: RoomTx) -> dict[str, Any]:
            actor = await self.rooms.authorize(tx, env.user, "room.ban")
            target = await tx.standing_of(data.user_id)
            if not can_moderate(actor, target, env.user.admin):
                raise ServiceError(ErrorCode.FORBIDDEN, "You may not ban that member.")
            if data.banned == (target == "banned"):
                return {}  # already so
            if target == "outsider":
                await repo.insert_membership(
                    tx.conn,
                    room=tx.code,
                    user_id=data.user_id,
                    name="",
                    role="member",
                    joined_at_ms=now_ms(),
                    banned=True,
                )
            else:
                await repo.set_banned(tx.conn, tx.code, data.user_id, data.banned)
            if data.banned:
                conns = await repo.sessions_of(tx.conn, tx.code, data.user_id)
                await repo.remove_sessions(tx.conn, tx.code, user_id=data.user_id)
                await self.rooms.forget_conns(tx, conns)
                tx.evict(data.user_id, conns, "banned")
            tx.members_changed(data.user_id)
            await tx.audit(env.user, "room.ban", data.user_id, {"banned": data.banned})
            return {}

        return await self.rooms.in_room(env, room_of(env), "room.ban", body)

    async def close(self, env: CommandEnvelope, _data: NoData) -> dict[str, Any]:
        """End the room for everyone (the owner, or a site admin): it is deleted, and every
        socket in it, on every gateway, gets `evicted` with reason `closed`. A retry with
        the same request id is answered `{}` from the command log, not `not_found`."""

        async def body(tx: RoomTx) -> dict[str, Any]:
            await self.rooms.authorize(tx, env.user, "room.close")
            await tx.close(env.user)
            return {}

        return await self.rooms.in_room(env, room_of(env), "room.close", body)

    async def audit(self, env: CommandEnvelope, query: AuditQuery) -> dict[str, Any]:
        code = room_of(env)
        async with self.rooms.engine.connect() as conn:
            row = await repo.get_room(conn, code)
            if row is None:
                raise ServiceError(ErrorCode.NOT_FOUND, "No such room.")
            await self.rooms.authorize(RoomTx(conn, row, 0), env.user, "room.audit")
            entries = await repo.list_audit(conn, code, query.limit, query.before_id)
        return {"entries": [e.model_dump() for e in entries]}
