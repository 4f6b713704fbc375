"""Room events: `{"type", "room", "v", "data"}`, published once, forwarded to clients as is.

The publisher encodes the frame the clients receive, so a gateway forwards the bytes without
decoding and re-encoding them per socket (STYLE.md point 6). Every event carries the full new
value of its part, except `chat`, which carries one new message (`ChatMessage`) or the id of
one removed message (`ChatDeleted`: `{"deleted": id}`), and `members`, which usually carries
what changed (`MembersDelta`: `{"changed": [Member, ...], "gone": [user_id, ...]}`), so a
join into a room of N members costs each member one entry, not N; it may also carry the whole
list (a JSON array of Member), which replaces the client's list. Clients tell the two forms
apart by the JSON type (array or object) and merge a delta as `MembersDelta` says.
"""

from typing import Any, Final, Literal

import orjson

from . import subjects
from .base import Contract

EventType = Literal["playback", "queue", "members", "settings", "chat", "resync"]
EVENT_TYPES: Final[tuple[str, ...]] = (
    "playback",
    "queue",
    "members",
    "settings",
    "chat",
    "resync",
)


class EventFrame(Contract):
    type: EventType
    room: str
    v: int
    data: Any


def encode(event_type: EventType, room: str, v: int, data: Any) -> bytes:
    return orjson.dumps({"type": event_type, "room": room, "v": v, "data": data})


def subject_for(event_type: EventType, room: str) -> str:
    return subjects.room_event(room, event_type)


# -- frames for one socket, outside the room's sequence ----------------------------------

# `closed`: the room's owner or a site admin closed the room (`room.close`); it is gone.
EvictReason = Literal["kicked", "banned", "closed"]


class Eviction(Contract):
    reason: EvictReason


class EvictedFrame(Contract):
    """`{"type": "evicted", "room", "data": {"reason"}}`, sent by a gateway to each socket of a
    kicked or banned user, and to every socket in a room that was closed. It has no `v` (it is
    not a room event): the socket receives no more of the room's events; a kicked user may
    `join` again, a banned one may not, and a closed room answers `join` with `not_found`."""

    type: Literal["evicted"]
    room: str
    data: Eviction


def evicted(room: str, reason: EvictReason) -> str:
    return orjson.dumps({"type": "evicted", "room": room, "data": {"reason": reason}}).decode()


# -- hints from the gateway, outside any room's sequence ---------------------------------

ReconnectReason = Literal["shutdown"]


class ReconnectHint(Contract):
    reason: ReconnectReason
    # Spread the reconnects: a client waits a random time up to this before it reconnects,
    # so the remaining gateways are not hit by every client of a drained one at once.
    within_ms: int


class ReconnectFrame(Contract):
    """`{"type": "reconnect", "data": {"reason", "within_ms"}}`: this gateway is going away
    (graceful shutdown). The socket closes with 1012 right after; reconnect (a load balancer
    sends you to another gateway), re-join your rooms, and retry what got no reply with the
    same request id."""

    type: Literal["reconnect"]
    data: ReconnectHint


def reconnect(within_ms: int) -> str:
    hint = {"reason": "shutdown", "within_ms": within_ms}
    return orjson.dumps({"type": "reconnect", "data": hint}).decode()


# bus_reconnected: the gateway lost its link to the bus for a moment (a frame of its own,
# without `v`). events_lost: a room event in the room's sequence (with `v`), published by
# rooms when events were committed and never published (`SequenceCheck`).
ResyncReason = Literal["bus_reconnected", "events_lost"]


class Resync(Contract):
    reason: ResyncReason


class ResyncFrame(Contract):
    """`{"type": "resync", "room", "data": {"reason"}}`: events of this room may have been
    missed without a later one showing the gap. Fetch a fresh snapshot (`room.sync`). With
    `events_lost` it is a room event and carries `v` too."""

    type: Literal["resync"]
    room: str
    v: int | None = None
    data: Resync


def events_lost(room: str, v: int) -> bytes:
    """The room event that tells every member to read a snapshot: some events before `v`
    were committed and never published."""
    return encode("resync", room, v, {"reason": "events_lost"})


def resync(room: str) -> str:
    return orjson.dumps(
        {"type": "resync", "room": room, "data": {"reason": "bus_reconnected"}}
    ).decode()
