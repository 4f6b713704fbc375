"""The data of every client command, one model per `type`, and where each is routed.

The gateway validates a frame's `data` against `ROUTES[type].data` before it sends anything on
the bus; the owning service validates again (it trusts nobody) with the same model.
"""

from dataclasses import dataclass
from typing import Final, Self

from pydantic import Field, model_validator

from . import subjects
from .base import Contract
from .models import AdSyncPolicy, ControlMode, Visibility

MAX_POSITION_MS: Final = 24 * 3600 * 1000  # no YouTube video is longer than a day


class NoData(Contract):
    pass


class RoomCreate(Contract):
    name: str | None = Field(default=None, min_length=1, max_length=80)
    visibility: Visibility = "private"
    control_mode: ControlMode = "owner_only"


class Join(Contract):
    # Clients that play video (the extension) join as players; a room in `starting` waits
    # for the `ready` of every player. Remotes and dashboards do not.
    player: bool = False


class SettingsUpdate(Contract):
    name: str | None = Field(default=None, min_length=1, max_length=80)
    visibility: Visibility | None = None
    control_mode: ControlMode | None = None
    ad_sync: AdSyncPolicy | None = None
    auto_advance: bool | None = None


class Seek(Contract):
    position_ms: int = Field(ge=0, le=MAX_POSITION_MS)


class EntryRef(Contract):
    entry_id: str = Field(min_length=1, max_length=64)


class QueueAdd(Contract):
    video_id: str | None = Field(default=None, max_length=64)
    url: str | None = Field(default=None, max_length=2048)
    title: str | None = Field(default=None, max_length=300)
    duration_ms: int | None = Field(default=None, ge=0, le=MAX_POSITION_MS)
    thumbnail: str | None = Field(default=None, max_length=2048)
    next: bool = False  # put it at the head of the queue ("play next")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.video_id is None) == (self.url is None):
            raise ValueError("give exactly one of video_id or url")
        return self


class QueueMove(Contract):
    entry_id: str = Field(min_length=1, max_length=64)
    index: int = Field(ge=0, le=10_000)


class TimePing(Contract):
    t0: float


@dataclass(frozen=True, slots=True)
class Route:
    """Where a client command goes: the owning service, its data model and its timeout."""

    service: str
    command: str
    data: type[Contract]
    needs_room: bool = True
    timeout_s: float = 3.0

    @property
    def subject(self) -> str:
        return subjects.command(self.service, self.command)


def _rooms(command: str, data: type[Contract] = NoData, **kw: object) -> Route:
    return Route("rooms", command, data, **kw)  # type: ignore[arg-type]


def _queue(command: str, data: type[Contract] = NoData, **kw: object) -> Route:
    return Route("queue", command, data, **kw)  # type: ignore[arg-type]


# Client `type` -> route. `join` and `room.sync` are composed by the gateway from several
# services' parts (rooms, queue) into one snapshot; `time.ping` is answered by the gateway.
ROUTES: Final[dict[str, Route]] = {
    "room.create": _rooms("create", RoomCreate, needs_room=False),
    "join": _rooms("join", Join),
    "leave": _rooms("leave"),
    "room.sync": _rooms("sync"),
    "room.settings": _rooms("settings", SettingsUpdate),
    "play": _rooms("play"),
    "pause": _rooms("pause"),
    "seek": _rooms("seek", Seek),
    "skip": _rooms("skip", timeout_s=5.0),
    "restart": _rooms("restart"),
    "ready": _rooms("ready", EntryRef),
    "ended": _rooms("ended", EntryRef, timeout_s=5.0),
    "queue.add": _queue("add", QueueAdd),
    "queue.remove": _queue("remove", EntryRef),
    "queue.move": _queue("move", QueueMove),
    "queue.load": _queue("load"),
}

GATEWAY_COMMANDS: Final = frozenset({"time.ping"})
