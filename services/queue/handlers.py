"""Thin NATS handlers for the queue service."""

from typing import Any

from services.common.bus import CommandRouter
from services.common.contracts.commands import EntryRef, NoData, QueueAdd, QueueMove
from services.common.contracts.envelope import AdvanceRequest, CommandEnvelope

from .service import QueueService


def build_router(service: QueueService) -> CommandRouter:
    router = CommandRouter("queue")
    router.command("add", QueueAdd)(service.add)
    router.command("remove", EntryRef)(service.remove)
    router.command("move", QueueMove)(service.move)
    router.command("load", NoData)(service.load)

    @router.command("advance", AdvanceRequest, internal=True)
    async def advance(_env: CommandEnvelope, request: AdvanceRequest) -> Any:
        return await service.advance(request)

    return router
