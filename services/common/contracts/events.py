"""Room events: `{"type", "room", "v", "data"}`, published once, forwarded to clients as is.

The publisher encodes the frame the clients receive, so a gateway forwards the bytes without
decoding and re-encoding them per socket (STYLE.md point 6). Every event carries the full new
value of its part, except `chat`, which carries one new message.
"""

from typing import Any, Final, Literal

import orjson

from . import subjects
from .base import Contract

EventType = Literal["playback", "queue", "members", "settings", "chat"]
EVENT_TYPES: Final[tuple[str, ...]] = ("playback", "queue", "members", "settings", "chat")


class EventFrame(Contract):
    type: EventType
    room: str
    v: int
    data: Any


def encode(event_type: EventType, room: str, v: int, data: Any) -> bytes:
    return orjson.dumps({"type": event_type, "room": room, "v": v, "data": data})


def subject_for(event_type: EventType, room: str) -> str:
    return subjects.room_event(room, event_type)
