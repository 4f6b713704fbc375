"""The writes of one transaction, sent as one statement where the database allows it.

PostgreSQL runs data-modifying CTEs, so a command's writes (its change, the room's new
version, its audit entry, its idempotency record) cost one round trip instead of four. They
all see the transaction's snapshot as it was before the statement, so a batch must not write
one row twice or read its own writes: callers merge the updates of a row into one statement
and flush before they read. Other databases (SQLite) get the statements one by one, in order.
"""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection


class WriteBatch:
    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: list[Any] = []

    def add(self, statement: Any) -> None:
        """An INSERT, UPDATE or DELETE to run at the next `flush`."""
        self._pending.append(statement)

    def __len__(self) -> int:
        return len(self._pending)

    async def flush(self, conn: AsyncConnection) -> None:
        statements, self._pending = self._pending, []
        if not statements:
            return
        if len(statements) == 1 or conn.dialect.name != "postgresql":
            for statement in statements:
                await conn.execute(statement)
            return
        *first, last = statements
        await conn.execute(last.add_cte(*(s.cte(f"w{i}") for i, s in enumerate(first))))
