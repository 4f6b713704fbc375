"""Server-to-client WebSocket frames, encoded by hand because it is the hot path.

A room event is framed once and the same bytes go to every member's socket (hub.py). Server
frames are never masked (RFC 6455 section 5.1), so a frame is a 2-10 byte header and the
payload; nothing about it depends on the socket it is written to.
"""

import struct

_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """One unfragmented text frame carrying `payload` (UTF-8 JSON)."""
    size = len(payload)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", _FIN_TEXT, 126, size) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, size) + payload
