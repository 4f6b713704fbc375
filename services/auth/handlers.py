"""Thin NATS handlers for the auth service."""

from typing import Any

from services.common.bus import CommandRouter
from services.common.contracts.commands import NoData
from services.common.contracts.envelope import (
    CommandEnvelope,
    GoogleFinish,
    GoogleStart,
    GuestRequest,
    LogoutRequest,
    RetentionRequest,
)

from .google import GoogleSignIn
from .service import AuthService
from .upkeep import Upkeep


def build_router(service: AuthService, google: GoogleSignIn) -> CommandRouter:
    router = CommandRouter("auth")

    # Sign-ins come through the gateway's HTTP face, which is a service caller.
    @router.command("guest", GuestRequest, internal=True)
    async def guest(_env: CommandEnvelope, request: GuestRequest) -> Any:
        return await service.guest(request)

    @router.command("me", NoData)
    async def me(env: CommandEnvelope, _data: NoData) -> Any:
        return await service.me(env)

    @router.command("logout", LogoutRequest, internal=True)
    async def logout(_env: CommandEnvelope, request: LogoutRequest) -> Any:
        return await service.logout(request)

    @router.command("google_start", GoogleStart, internal=True)
    async def google_start(_env: CommandEnvelope, request: GoogleStart) -> Any:
        return await google.start(request)

    @router.command("google_finish", GoogleFinish, internal=True)
    async def google_finish(_env: CommandEnvelope, request: GoogleFinish) -> Any:
        return await google.finish(request)

    # The janitor's stale-guest job (services/janitor/jobs.py).
    upkeep = Upkeep(service.engine, service.expires_s)

    @router.command("retention", RetentionRequest, internal=True)
    async def retention(_env: CommandEnvelope, request: RetentionRequest) -> Any:
        return await upkeep.retention(request)

    return router
