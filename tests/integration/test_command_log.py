"""services/common/idempotency.py on PostgreSQL: a refused request is answered from the log
when it is a retry of one that was applied, and refused as it was otherwise."""

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.idempotency import CommandLog
from services.rooms.models import RoomsCommand

pytestmark = pytest.mark.integration


async def test_a_retry_of_an_applied_request_gets_its_first_reply(engine: AsyncEngine) -> None:
    log = CommandLog(RoomsCommand.__table__)
    request_id = uuid.uuid4().hex
    async with engine.begin() as conn:
        await log.remember(conn, "ann", request_id, "seek", {"v": 7})
    duplicate = ServiceError(ErrorCode.CONFLICT, "already remembered")
    reply = await log.recall_or_raise(engine, "ann", request_id, "seek", duplicate)
    assert reply == {"v": 7}


async def test_a_request_never_applied_keeps_its_refusal(engine: AsyncEngine) -> None:
    log = CommandLog(RoomsCommand.__table__)
    refusal = ServiceError(ErrorCode.FORBIDDEN, "not yours")
    with pytest.raises(ServiceError) as raised:
        await log.recall_or_raise(engine, "ann", uuid.uuid4().hex, "seek", refusal)
    assert raised.value is refusal


async def test_a_request_id_reused_for_another_command_is_a_conflict(engine: AsyncEngine) -> None:
    log = CommandLog(RoomsCommand.__table__)
    request_id = uuid.uuid4().hex
    async with engine.begin() as conn:
        await log.remember(conn, "ann", request_id, "seek", {"v": 7})
    with pytest.raises(ServiceError) as raised:
        await log.recall_or_raise(
            engine, "ann", request_id, "pause", ServiceError(ErrorCode.FORBIDDEN)
        )
    assert raised.value.code == ErrorCode.CONFLICT
