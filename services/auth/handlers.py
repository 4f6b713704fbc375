"""Thin NATS handlers for the auth service."""

from typing import Any

from services.common.bus import CommandRouter
from services.common.contracts.commands import NoData
from services.common.contracts.envelope import CommandEnvelope, GuestRequest

from .service import AuthService


def build_router(service: AuthService) -> CommandRouter:
    router = CommandRouter("auth")

    # Sign-ins come through the gateway's HTTP face, which is a service caller.
    @router.command("guest", GuestRequest, internal=True)
    async def guest(_env: CommandEnvelope, request: GuestRequest) -> Any:
        return await service.guest(request)

    @router.command("me", NoData)
    async def me(env: CommandEnvelope, _data: NoData) -> Any:
        return await service.me(env)

    return router
