"""The admin dashboard's view of every room (`admin.rooms`): site admins only.

Admins act on rooms with the ordinary commands (the permission matrix lets them do anything);
what only they have is this overview across rooms, private ones included. The queue lengths
come from the queue service, which owns them; a slow queue leaves them out rather than
holding the dashboard up.
"""

import logging

from services.common import bus
from services.common.contracts import subjects
from services.common.contracts.commands import AdminRoomsQuery
from services.common.contracts.envelope import (
    CommandEnvelope,
    QueueLengthsQuery,
    QueueLengthsReply,
)
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import AdminRoom, AdminRoomsReply, NowPlaying

from . import repository as repo
from .service import RoomsService

log = logging.getLogger(__name__)

# The dashboard asks every few seconds; a queue that cannot answer within this is shown as
# unknown for one refresh.
QUEUE_LENGTHS_TIMEOUT_S = 1.0


class AdminView:
    def __init__(self, rooms: RoomsService) -> None:
        self.rooms = rooms

    async def overview(self, env: CommandEnvelope, query: AdminRoomsQuery) -> AdminRoomsReply:
        if not env.user.admin:
            raise ServiceError(ErrorCode.FORBIDDEN, "Only site admins may do this.")
        async with self.rooms.engine.connect() as conn:
            live = await repo.live_rooms(conn, query.limit)
            members = await repo.members_of(conn, [row.code for row, _ in live])
            audit = await repo.recent_audit(conn, query.audit_limit)
        lengths = await self._queue_lengths([row.code for row, _ in live])
        rooms = [
            AdminRoom(
                code=row.code,
                name=row.name,
                visibility=row.visibility,
                control_mode=row.control_mode,
                owner_id=row.owner_id,
                created_at_ms=row.created_at_ms,
                members=members.get(row.code, []),
                members_online=online,
                now_playing=NowPlaying(status=row.status, video_id=row.video_id, title=row.title),
                queue_length=None if lengths is None else lengths.get(row.code, 0),
            )
            for row, online in live
        ]
        return AdminRoomsReply(rooms=rooms, audit=audit)

    async def _queue_lengths(self, codes: list[str]) -> dict[str, int] | None:
        if not codes:
            return {}
        try:
            reply = await bus.request(
                self.rooms.nc,
                subjects.command("queue", "lengths"),
                QueueLengthsQuery(rooms=codes),
                timeout_s=QUEUE_LENGTHS_TIMEOUT_S,
            )
        except ServiceError as exc:
            log.warning("queue lengths unavailable: %s", exc.code)
            return None
        return QueueLengthsReply.model_validate(reply).lengths
