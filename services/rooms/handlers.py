"""Thin NATS handlers: validate (done by the router), call the service, return its reply."""

from typing import Any

from services.common.bus import CommandRouter
from services.common.contracts.commands import (
    AdminRoomsQuery,
    AdReport,
    AuditQuery,
    BanChange,
    EntryRef,
    Join,
    NoData,
    RateChange,
    RoleChange,
    RoomCreate,
    Seek,
    SettingsUpdate,
    TargetUser,
)
from services.common.contracts.envelope import (
    AccessQuery,
    CloseIdleRooms,
    CommandEnvelope,
    DirectoryQuery,
    DisconnectNotice,
    PresenceSweep,
    RetentionRequest,
    RoomVersions,
    SequenceCheck,
)

from .admin import AdminView
from .moderation import Moderation
from .service import RoomsService
from .upkeep import Upkeep


def build_router(service: RoomsService) -> CommandRouter:
    router = CommandRouter("rooms")
    moderation = Moderation(service)

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
        "skip_vote": service.skip_vote,
    }.items():
        router.command(name, NoData)(method)

    router.command("rate", RateChange)(service.rate)
    router.command("ad_start", AdReport)(service.ad_start)
    router.command("ad_end", AdReport)(service.ad_end)
    router.command("role", RoleChange)(moderation.set_role)
    router.command("transfer", TargetUser)(moderation.transfer)
    router.command("kick", TargetUser)(moderation.kick)
    router.command("ban", BanChange)(moderation.ban)
    router.command("close", NoData)(moderation.close)
    router.command("audit", AuditQuery)(moderation.audit)
    router.command("admin_rooms", AdminRoomsQuery)(AdminView(service).overview)

    # Service to service: the envelope's data carries the request model.
    @router.command("access", AccessQuery, internal=True)
    async def access(_env: CommandEnvelope, query: AccessQuery) -> Any:
        return await service.access(query)

    @router.command("disconnect", DisconnectNotice, internal=True)
    async def disconnect(_env: CommandEnvelope, notice: DisconnectNotice) -> Any:
        return await service.disconnect(notice)

    @router.command("sequence_check", SequenceCheck, internal=True)
    async def sequence_check(_env: CommandEnvelope, check: SequenceCheck) -> Any:
        return await service.check_sequence(check)

    @router.command("versions", RoomVersions, internal=True)
    async def versions(_env: CommandEnvelope, query: RoomVersions) -> Any:
        return await service.versions(query)

    @router.command("directory", DirectoryQuery, internal=True)
    async def directory(_env: CommandEnvelope, query: DirectoryQuery) -> Any:
        return await service.directory(query)

    # The janitor's jobs (services/janitor/jobs.py).
    upkeep = Upkeep(service)

    @router.command("presence_gateways", NoData, internal=True)
    async def presence_gateways(_env: CommandEnvelope, _data: NoData) -> Any:
        return await upkeep.gateways()

    @router.command("presence_sweep", PresenceSweep, internal=True)
    async def presence_sweep(_env: CommandEnvelope, request: PresenceSweep) -> Any:
        return await upkeep.sweep(request)

    @router.command("close_idle", CloseIdleRooms, internal=True)
    async def close_idle(_env: CommandEnvelope, request: CloseIdleRooms) -> Any:
        return await upkeep.close_idle(request)

    @router.command("retention", RetentionRequest, internal=True)
    async def retention(_env: CommandEnvelope, request: RetentionRequest) -> Any:
        return await upkeep.retention(request)

    return router
