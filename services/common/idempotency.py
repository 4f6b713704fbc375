"""Request ids as idempotency keys: a retried command returns the first reply, applied once.

Each service owns its own table of (user, request id) -> reply, written in the same
transaction as the command's effect, so "applied" and "remembered" cannot disagree.
"""

from typing import Any

import orjson
from sqlalchemy import BigInteger, LargeBinary, String, Table, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from .contracts.errors import ErrorCode, ServiceError
from .jsonutil import now_ms


class CommandLogMixin:
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    command: Mapped[str] = mapped_column(String(32))
    reply: Mapped[bytes] = mapped_column(LargeBinary)
    at_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class CommandLog:
    def __init__(self, table: Table) -> None:
        self.table = table

    async def recall(
        self, engine: AsyncEngine, user_id: str, request_id: str, command: str
    ) -> Any | None:
        """The stored reply of an earlier identical request, or None."""
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    select(self.table.c.command, self.table.c.reply).where(
                        self.table.c.user_id == user_id, self.table.c.request_id == request_id
                    )
                )
            ).first()
        if row is None:
            return None
        if row.command != command:
            raise ServiceError(ErrorCode.CONFLICT)
        return orjson.loads(row.reply)

    async def recall_or_raise(
        self,
        engine: AsyncEngine,
        user_id: str,
        request_id: str,
        command: str,
        refusal: BaseException,
    ) -> Any:
        """`refusal` stopped a request (a check, or its request id already remembered, as
        when a retry races its first attempt): if the same request was applied before, its
        reply; else the refusal. The log is read only then, never before every command."""
        recalled = await self.recall(engine, user_id, request_id, command)
        if recalled is None:
            raise refusal
        return recalled

    async def purge(self, conn: AsyncConnection, before_ms: int, limit: int) -> int:
        """Forget up to `limit` replies older than `before_ms` (the janitor's retention:
        clients retry within seconds, the log keeps a day). Oldest first, in one bounded
        statement, so a large backlog is trimmed in short transactions."""
        oldest = (
            select(self.table.c.user_id, self.table.c.request_id)
            .where(self.table.c.at_ms < before_ms)
            .order_by(self.table.c.at_ms)
            .limit(limit)
        )
        result = await conn.execute(
            delete(self.table).where(
                tuple_(self.table.c.user_id, self.table.c.request_id).in_(oldest)
            )
        )
        return result.rowcount or 0

    async def remember(
        self, conn: AsyncConnection, user_id: str, request_id: str, command: str, reply: Any
    ) -> None:
        await conn.execute(self.remember_statement(user_id, request_id, command, reply))

    def remember_statement(self, user_id: str, request_id: str, command: str, reply: Any) -> Any:
        """The INSERT of `remember`, for a batch (services/common/writes.py); a retry that
        committed first makes it fail with IntegrityError, like `remember`."""
        return self.table.insert().values(
            user_id=user_id,
            request_id=request_id,
            command=command,
            reply=orjson.dumps(reply),
            at_ms=now_ms(),
        )

    async def remember_many(
        self, conn: AsyncConnection, requests: list[tuple[str, str, str, Any]]
    ) -> None:
        """Remember several (user id, request id, command, reply) that went in together, in
        one executemany: one statement whatever their number, so the statement cache keeps
        one entry for it; a retry among them that committed first fails it all."""
        at = now_ms()
        rows = [
            {
                "user_id": user_id,
                "request_id": request_id,
                "command": command,
                "reply": orjson.dumps(reply),
                "at_ms": at,
            }
            for user_id, request_id, command, reply in requests
        ]
        await conn.execute(self.table.insert(), rows)
