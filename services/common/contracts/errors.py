"""The error catalogue: every code a client or a service may see, and what it means.

Codes are stable; messages are for people and may change. A handler raises `ServiceError`; the
bus layer turns it into `{"ok": false, "error": {"code", "message"}}`. Anything else becomes
`internal` and its text never leaves the process.
"""

from enum import StrEnum


class ErrorCode(StrEnum):
    BAD_FRAME = "bad_frame"  # not JSON, not an object, or missing id / type
    BAD_REQUEST = "bad_request"  # the frame's data does not match the command's schema
    UNKNOWN_TYPE = "unknown_type"  # no such command
    TOO_LARGE = "too_large"  # frame over MAX_FRAME_BYTES
    UNAUTHORIZED = "unauthorized"  # no valid token
    FORBIDDEN = "forbidden"  # authenticated, but the room's rules do not allow it
    NOT_FOUND = "not_found"  # no such room / entry / user
    NOT_MEMBER = "not_member"  # the command needs the caller to have joined the room
    BAD_STATE = "bad_state"  # not possible in the room's current playback state
    INVALID_VIDEO = "invalid_video"  # not a YouTube video id or URL
    QUEUE_EMPTY = "queue_empty"  # nothing to play
    QUEUE_FULL = "queue_full"  # queue length limit reached
    USER_QUEUE_FULL = "user_queue_full"  # the room's per-user cap on queued entries reached
    CONFLICT = "conflict"  # the same request id was used for a different command
    RATE_LIMITED = "rate_limited"
    NOT_CONFIGURED = "not_configured"  # the feature needs settings this deployment lacks
    UNAVAILABLE = "unavailable"  # the owning service has no responder right now
    TIMEOUT = "timeout"  # the owning service did not answer in time
    INTERNAL = "internal"  # a bug; the trace id is in the server log


DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.BAD_FRAME: "The frame is not a JSON object with string `id` and `type`.",
    ErrorCode.BAD_REQUEST: "The command's data does not match its schema.",
    ErrorCode.UNKNOWN_TYPE: "There is no command of that type.",
    ErrorCode.TOO_LARGE: "The frame is larger than the server accepts.",
    ErrorCode.UNAUTHORIZED: "A valid token is required.",
    ErrorCode.FORBIDDEN: "The room's rules do not allow you to do this.",
    ErrorCode.NOT_FOUND: "No such room, entry or user.",
    ErrorCode.NOT_MEMBER: "Join the room first.",
    ErrorCode.BAD_STATE: "Not possible in the room's current playback state.",
    ErrorCode.INVALID_VIDEO: "Not a YouTube video id or URL.",
    ErrorCode.QUEUE_EMPTY: "The queue is empty.",
    ErrorCode.QUEUE_FULL: "The queue is full.",
    ErrorCode.USER_QUEUE_FULL: "You have as many entries queued as this room allows.",
    ErrorCode.CONFLICT: "That request id was already used for another command.",
    ErrorCode.RATE_LIMITED: "Too many requests; slow down.",
    ErrorCode.NOT_CONFIGURED: "This server is not configured for that (e.g. Google sign-in).",
    ErrorCode.UNAVAILABLE: "The service is unavailable; try again.",
    ErrorCode.TIMEOUT: "The service did not answer in time; try again.",
    ErrorCode.INTERNAL: "Internal error; it has been logged.",
}


class ServiceError(Exception):
    """A domain error with a stable code, safe to show to the client."""

    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        self.code = code
        self.message = message or DESCRIPTIONS[code]
        super().__init__(f"{code}: {self.message}")

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


class CloseCode:
    """WebSocket close codes the gateway uses (4000-4999 are for applications)."""

    GOING_AWAY = 1001  # graceful shutdown: reconnect, another gateway will serve you
    INTERNAL = 1011  # also uvicorn's when a client missed PONG_TIMEOUT_SECONDS of pongs
    SERVICE_RESTART = 1012  # drained (SIGTERM) after a `reconnect` frame: reconnect now
    TRY_AGAIN_LATER = 1013  # sign-in cannot be checked right now (Redis down): retry soon
    UNAUTHORIZED = 4001  # also when the token expires while the socket is open
    SLOW_CONSUMER = 4008  # the send buffer overflowed; reconnect and resync
    TOO_LARGE = 4009  # frame over the hard limit (the socket cannot be trusted to resync)
