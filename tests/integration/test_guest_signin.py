"""A guest's sign-in on PostgreSQL: one INSERT on an autocommitting connection (no BEGIN and
COMMIT round trips around it), and the user is stored once it is answered."""

from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.auth.service import AuthService
from services.common.contracts.envelope import GuestRequest

pytestmark = pytest.mark.integration


async def test_a_guest_is_stored_by_one_autocommitted_insert(engine: AsyncEngine) -> None:
    auth = AuthService(engine, None, None, "secret-0123456789abcdef0123456789", 60)  # type: ignore[arg-type]
    statements: list[tuple[str, bool]] = []

    def seen(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        autocommit = conn.connection.dbapi_connection.autocommit
        statements.append((statement.split()[0].upper(), bool(autocommit)))

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        reply = await auth.guest(GuestRequest(name="Ada"))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert statements == [("INSERT", True)]
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("select name, kind from auth_users where id = :id"), {"id": reply.user.id}
            )
        ).one()
    assert tuple(row) == ("Ada", "guest")
