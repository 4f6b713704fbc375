"""Thin NATS handlers for the queue service."""

from typing import Any

from services.common.bus import CommandRouter
from services.common.contracts.commands import EntryRef, NoData, QueueAdd, QueueMove
from services.common.contracts.envelope import (
    AdvanceRequest,
    CommandEnvelope,
    PurgeOrphans,
    QueueLengthsQuery,
    RetentionRequest,
)

from .service import QueueService
from .upkeep import Upkeep


def build_router(service: QueueService) -> CommandRouter:
    router = CommandRouter("queue")
    router.command("add", QueueAdd)(service.add)
    router.command("remove", EntryRef)(service.remove)
    router.command("move", QueueMove)(service.move)
    router.command("load", NoData)(service.load)
    router.command("shuffle", NoData)(service.shuffle)

    @router.command("advance", AdvanceRequest, internal=True)
    async def advance(_env: CommandEnvelope, request: AdvanceRequest) -> Any:
        return await service.advance(request)

    @router.command("lengths", QueueLengthsQuery, internal=True)
    async def lengths(_env: CommandEnvelope, query: QueueLengthsQuery) -> Any:
        return await service.lengths(query)

    # The janitor's jobs (services/janitor/jobs.py).
    upkeep = Upkeep(service.engine, service.commands)

    @router.command("retention", RetentionRequest, internal=True)
    async def retention(_env: CommandEnvelope, request: RetentionRequest) -> Any:
        return await upkeep.retention(request)

    @router.command("purge_orphans", PurgeOrphans, internal=True)
    async def purge_orphans(_env: CommandEnvelope, request: PurgeOrphans) -> Any:
        return await upkeep.purge_orphans(request)

    return router
