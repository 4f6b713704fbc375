"""What the janitor asks of rooms: presence timeouts, closing idle rooms, retention.

Each command is internal (services only) and idempotent. Changes to a room run under its
lock like every other change (`RoomsService.in_room`) and re-check their condition there, so
two janitor leaders overlapping, or a member re-joining mid-sweep, cannot make them wrong.
"""

import logging
from collections import defaultdict

from services.common import presence, sequencer
from services.common.contracts.envelope import (
    ClosedRooms,
    CloseIdleRooms,
    PresenceGateways,
    PresenceSweep,
    PresenceSweepReply,
    RetentionRequest,
    RowsDeleted,
)
from services.common.contracts.errors import ErrorCode, ServiceError

from . import repository as repo
from .service import RoomsService
from .transaction import RoomTx

log = logging.getLogger(__name__)


class Upkeep:
    def __init__(self, rooms: RoomsService) -> None:
        self.rooms = rooms

    async def gateways(self) -> PresenceGateways:
        async with self.rooms.engine.connect() as conn:
            conns = await repo.live_session_conns(conn)
        return PresenceGateways(gateways=sorted({presence.gateway_of(c) for c in conns}))

    async def sweep(self, request: PresenceSweep) -> PresenceSweepReply:
        """Sessions of dead gateways become away; away sessions past the timeout go."""
        marked = 0
        for gateway in request.dead_gateways:
            async with self.rooms.engine.connect() as conn:
                found = await repo.live_sessions_of_gateway(conn, gateway, request.limit)
            for room, conns in _by_room(found).items():
                marked += await self.rooms.mark_away(room, conns)
        async with self.rooms.engine.connect() as conn:
            expired = await repo.expired_away(conn, request.away_before_ms, request.limit)
        removed = 0
        for room, conns in _by_room(expired).items():
            removed += await self._remove(room, conns, request.away_before_ms)
        if marked or removed:
            log.info("presence: %d sessions away, %d removed", marked, removed)
        return PresenceSweepReply(marked_away=marked, removed=removed)

    async def _remove(self, code: str, conns: list[str], before_ms: int) -> int:
        async def body(tx: RoomTx) -> int:
            removed = await repo.remove_expired_away(tx.conn, code, conns, before_ms)
            if removed:
                tx.members_changed(*removed)
                await self.rooms.forget_conns(tx, conns)
            return len(removed)

        try:
            return int(await self.rooms.in_room(None, code, "presence", body))
        except ServiceError as exc:
            if exc.code is ErrorCode.NOT_FOUND:
                return 0
            raise

    async def close_idle(self, request: CloseIdleRooms) -> ClosedRooms:
        """Delete rooms nobody has been in since `empty_before_ms`. Each is re-checked
        under the room's lock: a join racing the close either lands first (the room stays)
        or finds no room (`not_found`)."""
        async with self.rooms.engine.connect() as conn:
            candidates = await repo.idle_rooms(conn, request.empty_before_ms, request.limit)
        closed = []
        for code in candidates:
            async with self.rooms.engine.begin() as conn:
                try:
                    await sequencer.lock(conn, code)
                except ServiceError:
                    continue  # closed by a concurrent sweep
                if not await repo.is_idle(conn, code, request.empty_before_ms):
                    continue
                await repo.delete_room(conn, code)
            closed.append(code)
        if closed:
            log.info("closed %d idle rooms", len(closed))
        return ClosedRooms(rooms=closed)

    async def retention(self, request: RetentionRequest) -> RowsDeleted:
        async with self.rooms.engine.begin() as conn:
            if request.kind == "audit":
                deleted = await repo.purge_audit(conn, request.before_ms, request.limit)
            elif request.kind == "commands":
                deleted = await self.rooms.commands.purge(conn, request.before_ms, request.limit)
            else:
                raise ServiceError(ErrorCode.BAD_REQUEST, f"rooms keeps no {request.kind}")
        return RowsDeleted(deleted=deleted)


def _by_room(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for room, conn in pairs:
        grouped[room].append(conn)
    return grouped
