"""The data of every client command, one model per `type`, and where each is routed.

The gateway validates a frame's `data` against `ROUTES[type].data` before it sends anything on
the bus; the owning service validates again (it trusts nobody) with the same model.
"""

import unicodedata
from dataclasses import dataclass
from typing import Final, Literal, Self

from pydantic import Field, field_validator, model_validator

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
    vote_skip_ratio: float | None = Field(default=None, gt=0, le=1)
    queue_limit_per_user: int | None = Field(default=None, ge=0, le=200)


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


# A client's measured drift, answered by the gateway itself (a histogram, nothing stored).
# Bounded: past ten minutes a client is lost, not drifting; playbackRate's own range is
# 1/16..16 in Chromium.
MAX_DRIFT_MS: Final = 600_000


class DriftReport(Contract):
    drift_ms: float = Field(ge=-MAX_DRIFT_MS, le=MAX_DRIFT_MS, allow_inf_nan=False)
    rate: float | None = Field(default=None, ge=0.0625, le=16, allow_inf_nan=False)


MAX_CHAT_TEXT: Final = 1000  # characters after cleaning; a paragraph, not a document
# What a join snapshot carries of the chat; older messages come from `chat.history`.
SNAPSHOT_CHAT_MESSAGES: Final = 50
MAX_CHAT_PAGE: Final = 100
# Bidirectional overrides and isolates reorder what others see ("Trojan Source"); zero-width
# joiners stay (emoji sequences need them).
_BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean_chat_text(text: str) -> str:
    """A message without control characters (newlines stay), lone surrogates or bidi
    controls, and without surrounding whitespace."""
    kept = (
        ch
        for ch in text
        if ch == "\n" or (unicodedata.category(ch) not in ("Cc", "Cs") and ch not in _BIDI_CONTROLS)
    )
    return "".join(kept).strip()


class ChatSend(Contract):
    # The raw text may carry some control characters more than MAX_CHAT_TEXT allows.
    text: str = Field(min_length=1, max_length=4 * MAX_CHAT_TEXT)

    @field_validator("text")
    @classmethod
    def _clean(cls, text: str) -> str:
        cleaned = clean_chat_text(text)
        if not 1 <= len(cleaned) <= MAX_CHAT_TEXT:
            raise ValueError(f"1-{MAX_CHAT_TEXT} characters after removing control characters")
        return cleaned


class ChatHistory(Contract):
    """Older messages, newest first: the page before `before_id` (the oldest one held)."""

    before_id: str | None = Field(default=None, min_length=1, max_length=64)
    limit: int = Field(default=SNAPSHOT_CHAT_MESSAGES, ge=1, le=MAX_CHAT_PAGE)


class ChatDelete(Contract):
    message_id: str = Field(min_length=1, max_length=64)


# -- roles, moderation, room policy ------------------------------------------------------

USER_ID_MAX: Final = 64


class TargetUser(Contract):
    """`room.transfer`, `room.kick`: the member acted on."""

    user_id: str = Field(min_length=1, max_length=USER_ID_MAX)


class RoleChange(Contract):
    """`room.role`: grant (`operator`) or revoke (`member`); ownership moves by transfer."""

    user_id: str = Field(min_length=1, max_length=USER_ID_MAX)
    role: Literal["operator", "member"]


class BanChange(Contract):
    """`room.ban`: `banned` false lifts the ban. A user who never joined may be banned too."""

    user_id: str = Field(min_length=1, max_length=USER_ID_MAX)
    banned: bool = True


class AdReport(Contract):
    """`ad.start` / `ad.end` from a player; `entry_id`, when given, ties the ad to the entry
    the player had loaded, so a late report about an earlier entry changes nothing."""

    entry_id: str | None = Field(default=None, min_length=1, max_length=64)


class RateChange(Contract):
    # YouTube's player offers 0.25-2x; every client applies the room's rate.
    rate: float = Field(ge=0.25, le=2.0)


class AuditQuery(Contract):
    limit: int = Field(default=50, ge=1, le=200)
    before_id: int | None = Field(default=None, ge=1)  # paging: entries older than this id


class AdminRoomsQuery(Contract):
    """`admin.rooms` (site admins only): the rooms with someone online, busiest first, with
    their members, playback and queue length, and the newest audit entries of all rooms."""

    limit: int = Field(default=50, ge=1, le=200)
    audit_limit: int = Field(default=30, ge=0, le=200)


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


def _chat(command: str, data: type[Contract] = NoData, **kw: object) -> Route:
    return Route("chat", command, data, **kw)  # type: ignore[arg-type]


# Client `type` -> route. `join` and `room.sync` are composed by the gateway from several
# services' parts (rooms, queue, chat) into one snapshot; `time.ping` is answered by the gateway.
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
    "chat.send": _chat("send", ChatSend),
    "chat.history": _chat("history", ChatHistory),
    "chat.delete": _chat("delete", ChatDelete),
    # roles and moderation (rooms authorises each against its matrix, rooms/permissions.py)
    "room.role": _rooms("role", RoleChange),
    "room.transfer": _rooms("transfer", TargetUser),
    "room.kick": _rooms("kick", TargetUser),
    "room.ban": _rooms("ban", BanChange),
    "room.audit": _rooms("audit", AuditQuery),
    # Ends the room for everyone (owner or admin): every socket in it is evicted, `closed`.
    "room.close": _rooms("close"),
    # player reports, speed, votes
    "ad.start": _rooms("ad_start", AdReport),
    "ad.end": _rooms("ad_end", AdReport),
    "rate": _rooms("rate", RateChange),
    "skip.vote": _rooms("skip_vote", timeout_s=5.0),
    "queue.shuffle": _queue("shuffle"),
    # the admin dashboard (rooms refuses anyone without the token's `adm` claim)
    "admin.rooms": _rooms("admin_rooms", AdminRoomsQuery, needs_room=False),
}

GATEWAY_COMMANDS: Final = frozenset({"time.ping", "drift.report"})
