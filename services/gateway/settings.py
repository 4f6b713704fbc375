import os
import uuid

from pydantic import Field

from services.common.settings import CommonSettings


class GatewaySettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    # Unique per process start (the default adds a random suffix): it prefixes the ids of
    # this process's sockets in rooms and names its liveness key, so a restarted gateway
    # must not reuse a dead one's id (a pod name alone would).
    gateway_id: str = Field(
        default_factory=lambda: f"{os.uname().nodename[:20]}-{uuid.uuid4().hex[:6]}"
    )
    cors_origins: str = "*"
    # The admin dashboard links here when set (GET /api/config), e.g. https://grafana.example.com.
    grafana_url: str = ""
    # The gateways' public URL (as auth's): the sign-in page hands its token to windows of
    # this origin only, and marks its cookie Secure when it is https.
    backend_base_url: str = "http://127.0.0.1:8000"
    # A frame over this gets a `too_large` reply (the socket lives on); the largest legitimate
    # frame is a queue.add with a long URL and title, about 3 KB.
    max_frame_bytes: int = 16 * 1024
    # Frames past this close the socket (1009): the WebSocket library refuses to buffer more.
    hard_frame_bytes: int = 1024 * 1024
    # What a socket's transport may hold unread by its client. A member past it is dropped
    # (close 4008) rather than slowing the room: 1 MiB is minutes of busy room events.
    send_queue_bytes: int = 1024 * 1024
    # Commands one socket may have waiting on services at once.
    max_inflight_per_socket: int = 16
    # How long a room's events wait for a missing version before the gap is passed on
    # (clients then resync). Publishers race by well under a millisecond on one bus.
    reorder_wait_s: float = 0.25
    # How often the gateway compares the rooms it has members of with their committed
    # versions (services/gateway/sequencesweep.py): events a process committed and died
    # before publishing reach every member as a `resync` within about this much.
    sequence_sweep_seconds: float = Field(default=10.0, gt=0)

    # -- presence and resilience (issue 4) ------------------------------------------------
    # WebSocket protocol pings (uvicorn sends them; browsers answer by themselves, no page
    # code involved): a socket that misses a pong for PONG_TIMEOUT_SECONDS is closed (1011)
    # and its member shows away. A dead peer is noticed within interval + timeout = 35 s;
    # the seed (Socket.IO) pinged every 25 s and waited 20 s.
    heartbeat_interval_seconds: float = 15.0
    pong_timeout_seconds: float = 20.0
    # This gateway's liveness key in Redis (services/common/presence.py): rewritten this
    # often, it expires after three missed beats, and the janitor then marks this gateway's
    # sessions away (it was killed without closing them).
    presence_heartbeat_seconds: float = 5.0
    # Origins a browser page may open /ws from (a comma list; `*` allows any). Besides
    # these: BACKEND_BASE_URL's origin, this gateway's own host (the portals), every
    # `chrome-extension://` origin (the extension's service worker) unless the list names
    # some, CORS_ORIGINS when it is not `*`, and clients that send no Origin (tools, apps).
    allowed_origins: str = ""
    # Frames one socket may send: a token bucket (rate per second, burst). Every frame
    # counts, good or bad. A person clicks a few times a second; the extension sends a burst
    # of 8 clock pings on connect, ready and ad reports, and a join per room.
    conn_rate_per_second: float = 20.0
    conn_rate_burst: int = 60
    # Commands one user may send over all their sockets on all gateways (a bucket in Redis).
    user_rate_per_second: float = 30.0
    user_rate_burst: int = 90
    # Graceful shutdown (SIGTERM): every socket gets a `reconnect` frame and a 1012 close;
    # clients spread their reconnects over `drain_spread_ms` (the frame says so) so the other
    # gateways are not stormed. The process waits for the sockets to go, at most
    # `drain_timeout_seconds`, before uvicorn's own shutdown.
    drain_spread_ms: int = 2000
    drain_timeout_seconds: float = 5.0
