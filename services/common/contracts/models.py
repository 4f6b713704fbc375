"""The room's parts as they travel in snapshots and events."""

from typing import Any, Literal

from pydantic import Field

from .base import Contract

ControlMode = Literal["owner_only", "operators", "any"]
Visibility = Literal["public", "private"]
AdSyncPolicy = Literal["off", "pause_all", "operators_only", "starting_only"]
Role = Literal["owner", "operator", "member"]
PlaybackStatus = Literal["idle", "starting", "playing", "paused", "midroll"]

ROOM_CODE_PATTERN = r"^[A-Za-z0-9]{4,16}$"
VIDEO_ID_PATTERN = r"^[A-Za-z0-9_-]{11}$"


class UserRef(Contract):
    """Who sent a command: taken by the gateway from the verified token, never from the frame."""

    id: str
    name: str
    admin: bool = False


class RoomInfo(Contract):
    code: str
    owner_id: str
    created_at_ms: int


class RoomSettings(Contract):
    name: str = Field(max_length=80)
    visibility: Visibility = "private"
    control_mode: ControlMode = "owner_only"
    ad_sync: AdSyncPolicy = "pause_all"
    auto_advance: bool = True
    # The share of online members whose `skip.vote` skips the current entry (CyTube's
    # default is a half); controllers' `skip` is immediate whatever this says.
    vote_skip_ratio: float = Field(default=0.5, gt=0, le=1)
    # Entries one member may have waiting in the queue; 0 = no cap. Owners, operators and
    # admins are never capped.
    queue_limit_per_user: int = Field(default=0, ge=0, le=200)


class Member(Contract):
    user_id: str
    name: str
    role: Role
    online: bool  # has a live socket in the room
    player: bool
    # Every socket of theirs dropped without a `leave` (closed tab, lost network, a gateway
    # died): they keep their place and role for a grace period (the janitor's
    # PRESENCE_AWAY_TIMEOUT_SECONDS), then leave the list unless they reconnect.
    away: bool = False
    # When they first joined the room (server time, ms). The list is ordered by
    # (joined_at_ms, user_id): a client merging a `MembersDelta` puts a newcomer at that
    # place, which is where a fresh snapshot lists them (someone who left and comes back keeps
    # their first joined_at_ms, so their place is not always at the end). The rooms service
    # always sets it; None (an older server) sorts last.
    joined_at_ms: int | None = None


class MembersDelta(Contract):
    """The data of a `members` event that carries only what changed (the usual form; the
    event may also carry the whole list, a JSON array of Member, which replaces the list).

    `changed`: the current entries of the users this change touched who are still listed
    (online, away, or holding a role above member), new or not; `gone`: the touched users who
    are no longer listed (left, kicked, banned, past the away timeout; it may name someone who
    was not listed before, e.g. a ban before they ever joined). A client replaces an entry
    with the same user_id in place, inserts a new one at its (joined_at_ms, user_id) place,
    and drops every `gone` id: the result equals a fresh snapshot's list.
    """

    changed: list[Member]
    gone: list[str]


class QueueEntry(Contract):
    id: str
    video_id: str
    title: str | None = None
    duration_ms: int | None = None
    thumbnail: str | None = None
    added_by: str
    added_by_name: str


class Playback(Contract):
    status: PlaybackStatus = "idle"
    entry_id: str | None = None
    video_id: str | None = None
    title: str | None = None
    duration_ms: int | None = None
    position_ms: int = 0
    # Server time (ms since the epoch) at which the video is at position_ms. While playing,
    # anyone computes the expected position as position_ms + (now - anchor_ms) * rate.
    anchor_ms: int = 0
    rate: float = 1.0
    # Members who voted to skip the current entry (`skip.vote`); reset with every new entry.
    skip_votes: int = 0


class ChatMessage(Contract):
    id: str
    user_id: str
    name: str
    text: str
    at_ms: int


class ChatDeleted(Contract):
    """The data of a `chat` event that removes a message (`chat.delete` by a moderator):
    clients drop the message with this id. A `chat` event otherwise carries a ChatMessage."""

    deleted: str


class Versions(Contract):
    """The room version at which each part last changed; an event applies when its v is newer."""

    playback: int = 0
    members: int = 0
    settings: int = 0
    queue: int = 0
    chat: int = 0


class Snapshot(Contract):
    room: RoomInfo
    settings: RoomSettings
    members: list[Member]
    queue: list[QueueEntry]
    playback: Playback
    chat: list[ChatMessage]
    versions: Versions
    v: int


class NowPlaying(Contract):
    status: PlaybackStatus
    video_id: str | None = None
    title: str | None = None


class PublicRoom(Contract):
    """One line of the public room directory (`GET /api/rooms`)."""

    code: str
    name: str
    members_online: int
    now_playing: NowPlaying


class AuditEntry(Contract):
    """Who did what in a room (`room.audit`); `user_id` is None for the room's own moves."""

    id: int
    at_ms: int
    action: str
    user_id: str | None = None
    name: str | None = None
    target_id: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class AdminRoom(Contract):
    """One live room as the admin dashboard shows it (`admin.rooms`)."""

    code: str
    name: str
    visibility: Visibility
    control_mode: ControlMode
    owner_id: str
    created_at_ms: int
    members: list[Member]  # online, or holding a role (as in a snapshot)
    members_online: int
    now_playing: NowPlaying
    queue_length: int | None = None  # None: the queue service did not answer in time


class RoomAuditEntry(AuditEntry):
    """An audit entry with its room, for the admins' feed over every room."""

    room: str


class AdminRoomsReply(Contract):
    rooms: list[AdminRoom]
    audit: list[RoomAuditEntry]  # newest first
