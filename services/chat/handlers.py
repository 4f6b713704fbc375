"""Thin NATS handlers for the chat service."""

from typing import Any

from services.common.bus import CommandRouter
from services.common.contracts.commands import ChatDelete, ChatHistory, ChatSend
from services.common.contracts.envelope import CommandEnvelope, PurgeOrphans, RetentionRequest

from .service import ChatService
from .upkeep import Upkeep


def build_router(service: ChatService) -> CommandRouter:
    router = CommandRouter("chat")
    router.command("send", ChatSend)(service.send)
    router.command("history", ChatHistory)(service.history)
    router.command("delete", ChatDelete)(service.delete)

    # The janitor's jobs (services/janitor/jobs.py).
    upkeep = Upkeep(service.engine, service.commands)

    @router.command("retention", RetentionRequest, internal=True)
    async def retention(_env: CommandEnvelope, request: RetentionRequest) -> Any:
        return await upkeep.retention(request)

    @router.command("purge_orphans", PurgeOrphans, internal=True)
    async def purge_orphans(_env: CommandEnvelope, request: PurgeOrphans) -> Any:
        return await upkeep.purge_orphans(request)

    return router
