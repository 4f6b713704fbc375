import os
import uuid

from pydantic import Field

from services.common.settings import CommonSettings


class GatewaySettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    gateway_id: str = Field(
        default_factory=lambda: f"{os.uname().nodename[:20]}-{uuid.uuid4().hex[:6]}"
    )
    cors_origins: str = "*"
    # A frame over this gets a `too_large` reply (the socket lives on); the largest legitimate
    # frame is a queue.add with a long URL and title, about 3 KB.
    max_frame_bytes: int = 16 * 1024
    # Frames past this close the socket (1009): the WebSocket library refuses to buffer more.
    hard_frame_bytes: int = 1024 * 1024
    # Per-socket send buffer. A member whose buffer is full is dropped (close 4008) rather
    # than slowing the room: 256 frames is over a minute of busy room events.
    send_queue_frames: int = 256
    send_queue_bytes: int = 1024 * 1024
    # Commands one socket may have waiting on services at once.
    max_inflight_per_socket: int = 16
    # How long a room's events wait for a missing version before the gap is passed on
    # (clients then resync). Publishers race by well under a millisecond on one bus.
    reorder_wait_s: float = 0.25
