"""Parsing client frames and building replies; pure, so every bad input is unit-testable."""

import re
from dataclasses import dataclass
from typing import Any

import orjson

from services.common.contracts.envelope import MAX_REQUEST_ID
from services.common.contracts.errors import ErrorCode, ServiceError

_ROOM = re.compile(r"[A-Za-z0-9]{4,16}")
_MAX_TYPE = 32


@dataclass(frozen=True, slots=True)
class Frame:
    id: str
    type: str
    room: str | None
    data: dict[str, Any]


class FrameError(Exception):
    """A frame we cannot act on; `request_id` is set when the frame had a usable id."""

    def __init__(self, error: ServiceError, request_id: str | None) -> None:
        self.error = error
        self.request_id = request_id
        super().__init__(str(error))


def parse(raw: str | bytes) -> Frame:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FrameError(ServiceError(ErrorCode.BAD_FRAME, "Not valid JSON."), None) from exc
    if not isinstance(obj, dict):
        raise FrameError(ServiceError(ErrorCode.BAD_FRAME, "A frame is a JSON object."), None)
    request_id = obj.get("id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID:
        raise FrameError(
            ServiceError(ErrorCode.BAD_FRAME, f"id: a string of 1-{MAX_REQUEST_ID} characters."),
            None,
        )
    unknown = set(obj) - {"id", "type", "room", "data"}
    if unknown:
        raise FrameError(
            ServiceError(ErrorCode.BAD_FRAME, f"Unknown field: {sorted(unknown)[0][:40]}"),
            request_id,
        )
    frame_type = obj.get("type")
    if not isinstance(frame_type, str) or not 0 < len(frame_type) <= _MAX_TYPE:
        raise FrameError(ServiceError(ErrorCode.BAD_FRAME, "type: a string."), request_id)
    room = obj.get("room")
    if room is not None and (not isinstance(room, str) or not _ROOM.fullmatch(room)):
        raise FrameError(ServiceError(ErrorCode.BAD_REQUEST, "room: not a room code."), request_id)
    data = obj.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FrameError(ServiceError(ErrorCode.BAD_REQUEST, "data: an object."), request_id)
    return Frame(request_id, frame_type, room, data)


def reply_ok(request_id: str, data: Any) -> str:
    return orjson.dumps({"re": request_id, "ok": True, "data": data}).decode()


def reply_error(request_id: str | None, error: ServiceError) -> str:
    return orjson.dumps({"re": request_id, "ok": False, "error": error.to_dict()}).decode()


def splice_reply(request_id: str, service_reply: bytes) -> str:
    """`{"ok": ...}` from a service -> `{"re": id, "ok": ...}` without decoding it."""
    return (b'{"re":' + orjson.dumps(request_id) + b"," + service_reply[1:]).decode()
