"""The room's parts as they travel in snapshots and events."""

from typing import Literal

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


class Member(Contract):
    user_id: str
    name: str
    role: Role
    online: bool
    player: bool


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


class ChatMessage(Contract):
    id: str
    user_id: str
    name: str
    text: str
    at_ms: int


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
