"""Rooms' notices to the gateways, kept until they are sent (a transactional outbox).

An eviction (kick, ban, close) takes sockets out of a room's channel at every gateway, and
no resync does that: a lost one leaves a banned user's sockets receiving the room's events.
So the notice is written in the transaction of the change that makes it (`write`), published
after the commit, and deleted once the bus has it (`forget`). A notice whose publish failed,
or whose replica died first, is still here: every rooms replica's sweep sends the notices
older than `GRACE_MS` (`send_stale`; SKIP LOCKED spreads them over the replicas). A gateway's
eviction is idempotent, so a notice sent twice does nothing more.
"""

import logging
import uuid

from nats.aio.client import Client as NATS
from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import bus
from services.common.jsonutil import now_ms
from services.common.writes import WriteBatch

from .models import RoomNotice

log = logging.getLogger(__name__)

GRACE_MS = 5_000  # a younger notice is still its committing replica's to send
BATCH = 100
FLUSH_TIMEOUT_S = 2.0

_outbox = RoomNotice.__table__


def write(writes: WriteBatch, subject: str, payload: bytes) -> str:
    """Keep a notice with the transaction's other writes; its id, to `forget` it once sent."""
    notice_id = uuid.uuid4().hex
    writes.add(
        insert(_outbox).values(
            id=notice_id, subject=subject, payload=payload.decode(), created_ms=now_ms()
        )
    )
    return notice_id


async def forget(engine: AsyncEngine, nc: NATS, ids: list[str]) -> None:
    """These notices were published: once the bus server has them, they are done."""
    await nc.flush(timeout=FLUSH_TIMEOUT_S)
    async with engine.begin() as conn:
        await conn.execute(delete(_outbox).where(_outbox.c.id.in_(ids)))


def _stale_before(grace_ms: int | None) -> int:
    return now_ms() - (GRACE_MS if grace_ms is None else grace_ms)


async def any_stale(conn: AsyncConnection, grace_ms: int | None = None) -> bool:
    """Whether a notice has waited `grace_ms` (`GRACE_MS`) or longer: a read without locks,
    so a sweep that finds none takes no transaction."""
    query = select(_outbox.c.id).where(_outbox.c.created_ms <= _stale_before(grace_ms)).limit(1)
    return (await conn.execute(query)).first() is not None


async def send_stale(engine: AsyncEngine, nc: NATS, grace_ms: int | None = None) -> int:
    """Send the notices left `grace_ms` (`GRACE_MS`) or longer (their publish failed, or
    their replica died before it), then delete them; how many were sent. Deleted only once
    the bus server has them: a failure leaves them for the next sweep."""
    query = (
        select(_outbox.c.id, _outbox.c.subject, _outbox.c.payload)
        .where(_outbox.c.created_ms <= _stale_before(grace_ms))
        .order_by(_outbox.c.created_ms)
        .limit(BATCH)
    )
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        stale = (await conn.execute(query)).all()
        if not stale:
            return 0
        for row in stale:
            await bus.publish(nc, row.subject, row.payload.encode())
        await nc.flush(timeout=FLUSH_TIMEOUT_S)
        await conn.execute(delete(_outbox).where(_outbox.c.id.in_([row.id for row in stale])))
    log.warning("sent %d notices their replica had not", len(stale))
    return len(stale)
