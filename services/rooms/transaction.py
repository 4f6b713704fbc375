"""One command's view of one room, inside the room's lock, and the events it produces.

A command loads the room, changes parts through this object, and `commit` writes what changed,
gives each changed part the next room version, and returns the encoded events to publish once
the transaction has committed.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.common import sequencer
from services.common.contracts import events
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import Role, RoomSettings, UserRef

from . import repository as repo
from .playback import PlaybackState


@dataclass(frozen=True, slots=True)
class Published:
    subject: str
    payload: bytes


class RoomTx:
    def __init__(self, conn: AsyncConnection, row: Any, v: int) -> None:
        self.conn = conn
        self.row = row
        self.code: str = row.code
        self.v = v
        self.playback = repo.playback_of(row)
        self.settings = repo.settings_of(row)
        self._playback_changed = False
        self._settings_changed = False
        self._members_changed = False
        self._players: frozenset[str] | None = None
        self._published: list[Published] = []

    @classmethod
    async def open(cls, conn: AsyncConnection, code: str) -> "RoomTx":
        v = await sequencer.lock(conn, code)
        row = await repo.get_room(conn, code)
        if row is None:
            raise ServiceError(ErrorCode.NOT_FOUND, "No such room.")
        return cls(conn, row, v)

    async def role_of(self, user: UserRef) -> Role | None:
        if user.id == self.row.owner_id:
            return "owner"
        membership = await repo.get_membership(self.conn, self.code, user.id)
        if membership is None or membership.banned:
            return None
        return membership.role

    async def players(self) -> frozenset[str]:
        if self._players is None:
            self._players = await repo.players(self.conn, self.code)
        return self._players

    def set_playback(self, state: PlaybackState) -> None:
        if state != self.playback:
            self.playback = state
            self._playback_changed = True

    def set_settings(self, settings: RoomSettings) -> None:
        if settings != self.settings:
            self.settings = settings
            self._settings_changed = True

    def members_changed(self) -> None:
        self._members_changed = True
        self._players = None

    @property
    def playback_changed(self) -> bool:
        return self._playback_changed

    async def commit(self) -> list[Published]:
        """Write what changed with fresh versions; return every event of this transaction so
        far, in version order (a command may commit midway to read its own writes)."""
        out = self._published
        v = self.v
        if self._settings_changed:
            v += 1
            await repo.save_settings(self.conn, self.code, self.settings, v)
            out.append(self._event("settings", v, self.settings.model_dump()))
        if self._members_changed:
            v += 1
            await repo.set_members_version(self.conn, self.code, v)
            members = await repo.list_members(self.conn, self.code)
            out.append(self._event("members", v, [m.model_dump() for m in members]))
        if self._playback_changed:
            v += 1
            await repo.save_playback(self.conn, self.code, self.playback, v)
            out.append(self._event("playback", v, self.playback.to_contract().model_dump()))
        if v != self.v:
            await sequencer.advance_to(self.conn, self.code, v)
            self.v = v
        self._settings_changed = self._members_changed = self._playback_changed = False
        return out

    def _event(self, event_type: events.EventType, v: int, data: Any) -> Published:
        return Published(
            events.subject_for(event_type, self.code), events.encode(event_type, self.code, v, data)
        )

    async def snapshot_part(self) -> dict[str, Any]:
        """The rooms part of a join snapshot, as of this transaction (after its writes)."""
        row = await repo.get_room(self.conn, self.code)
        members = await repo.list_members(self.conn, self.code)
        return {
            "room": repo.room_info(row).model_dump(),
            "settings": repo.settings_of(row).model_dump(),
            "members": [m.model_dump() for m in members],
            "playback": repo.playback_of(row).to_contract().model_dump(),
            "versions": {
                "playback": row.playback_v,
                "members": row.members_v,
                "settings": row.settings_v,
            },
        }
