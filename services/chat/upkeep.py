"""What the janitor asks of chat: retention of messages and of the command log, and the rows
of rooms that rooms closed. Idempotent; bounded per call."""

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.contracts.envelope import PurgeOrphans, RetentionRequest, RowsDeleted
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.idempotency import CommandLog

from . import repository as repo


class Upkeep:
    def __init__(self, engine: AsyncEngine, commands: CommandLog) -> None:
        self.engine = engine
        self.commands = commands

    async def retention(self, request: RetentionRequest) -> RowsDeleted:
        async with self.engine.begin() as conn:
            if request.kind == "messages":
                deleted = await repo.purge_messages(conn, request.before_ms, request.limit)
            elif request.kind == "commands":
                deleted = await self.commands.purge(conn, request.before_ms, request.limit)
            else:
                raise ServiceError(ErrorCode.BAD_REQUEST, f"chat keeps no {request.kind}")
        return RowsDeleted(deleted=deleted)

    async def purge_orphans(self, request: PurgeOrphans) -> RowsDeleted:
        async with self.engine.begin() as conn:
            return RowsDeleted(deleted=await repo.purge_orphans(conn, request.limit))
