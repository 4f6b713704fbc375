"""The janitor's retention requests, answered the same way by every service that keeps rows
per room: its own kind of old rows, its command log, and the rows of rooms that rooms closed.
Idempotent and bounded per call; each service names its kind and its two purge queries."""

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .contracts.envelope import PurgeOrphans, RetentionRequest, RowsDeleted
from .contracts.errors import ErrorCode, ServiceError
from .idempotency import CommandLog

PurgeOld = Callable[[AsyncConnection, int, int], Awaitable[int]]  # (conn, before_ms, limit)
PurgeOrphanRows = Callable[[AsyncConnection, int], Awaitable[int]]  # (conn, limit)


class RetentionUpkeep:
    def __init__(
        self,
        engine: AsyncEngine,
        commands: CommandLog,
        *,
        service: str,
        kind: str,
        purge_old: PurgeOld,
        purge_orphans: PurgeOrphanRows,
    ) -> None:
        self.engine = engine
        self.commands = commands
        self._service = service
        self._kind = kind
        self._purge_old = purge_old
        self._purge_orphans = purge_orphans

    async def retention(self, request: RetentionRequest) -> RowsDeleted:
        async with self.engine.begin() as conn:
            if request.kind == self._kind:
                deleted = await self._purge_old(conn, request.before_ms, request.limit)
            elif request.kind == "commands":
                deleted = await self.commands.purge(conn, request.before_ms, request.limit)
            else:
                raise ServiceError(
                    ErrorCode.BAD_REQUEST, f"{self._service} keeps no {request.kind}"
                )
        return RowsDeleted(deleted=deleted)

    async def purge_orphans(self, request: PurgeOrphans) -> RowsDeleted:
        async with self.engine.begin() as conn:
            return RowsDeleted(deleted=await self._purge_orphans(conn, request.limit))
