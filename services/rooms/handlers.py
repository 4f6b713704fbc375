"""Thin NATS handlers: validate (done by the router), call the service, return its reply."""

from typing import Any

from services.common.bus import CommandRouter
from services.common.contracts.commands import (
    EntryRef,
    Join,
    NoData,
    RoomCreate,
    Seek,
    SettingsUpdate,
)
from services.common.contracts.envelope import AccessQuery, CommandEnvelope, DisconnectNotice

from .service import RoomsService


def build_router(service: RoomsService) -> CommandRouter:
    router = CommandRouter("rooms")

    @router.command("create", RoomCreate)
    async def create(env: CommandEnvelope, data: RoomCreate) -> Any:
        return await service.create(env, data)

    @router.command("join", Join)
    async def join(env: CommandEnvelope, data: Join) -> Any:
        return await service.join(env, data)

    @router.command("settings", SettingsUpdate)
    async def settings(env: CommandEnvelope, data: SettingsUpdate) -> Any:
        return await service.update_settings(env, data)

    @router.command("seek", Seek)
    async def seek(env: CommandEnvelope, data: Seek) -> Any:
        return await service.seek(env, data)

    @router.command("ready", EntryRef)
    async def ready(env: CommandEnvelope, data: EntryRef) -> Any:
        return await service.ready(env, data)

    @router.command("ended", EntryRef)
    async def ended(env: CommandEnvelope, data: EntryRef) -> Any:
        return await service.ended(env, data)

    for name, method in {
        "leave": service.leave,
        "sync": service.sync,
        "play": service.play,
        "pause": service.pause,
        "restart": service.restart,
        "skip": service.skip,
    }.items():
        router.command(name, NoData)(method)

    # Service to service: the envelope's data carries the request model.
    @router.command("access", AccessQuery, internal=True)
    async def access(_env: CommandEnvelope, query: AccessQuery) -> Any:
        return await service.access(query)

    @router.command("disconnect", DisconnectNotice, internal=True)
    async def disconnect(_env: CommandEnvelope, notice: DisconnectNotice) -> Any:
        return await service.disconnect(notice)

    return router
