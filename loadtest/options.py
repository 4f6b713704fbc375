"""What a load run is given: how hard to push (`LoadOptions`) and what to push (`Target`)."""

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

READ_DRIVERS = ("queue", "chat")  # the drivers with a `reads` mode


@dataclass
class LoadOptions:
    """How one driver runs. `rooms`, `members` and `rate` left None take the driver's own
    defaults (each driver's DEFAULTS)."""

    duration_s: float = 10.0
    # Target operations per second, started on a fixed schedule whatever the replies do
    # (open loop); 0 = closed loop: `concurrency` workers, each waiting for its reply.
    rate: float | None = None
    # Operations in flight at most. An operation due while the cap is reached starts late,
    # and its latency is still counted from when it was due (no coordinated omission).
    concurrency: int = 64
    rooms: int | None = None
    members: int | None = None
    # A request's reply timeout; None: the command's own (ROUTES[...].timeout_s), as the
    # gateway uses.
    timeout_s: float | None = None
    setup_concurrency: int = 32
    # gateway: clients that run clock sync in one playing room while the load runs.
    probes: int = 3
    # auth: `nats` asks st.auth.cmd.guest as the gateway does; `http` posts /auth/guest.
    auth_via: Literal["nats", "http"] = "nats"
    # queue, chat: the reads of every join's snapshot (queue.load, chat.history) instead of
    # writes.
    reads: bool = False
    quiet: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    """A running ShareTube: its gateways' base URLs, its bus, and (when known) the PIDs of its
    processes by name (`gateway-0`, `rooms-1`, `nats`, ...) for CPU and memory figures.

    `redis_url`, when given, lets the bus drivers keep their made-up gateway id alive in
    Redis as a real gateway does, so a janitor does not mark their sessions away mid-run.
    """

    base_urls: tuple[str, ...]
    nats_url: str
    redis_url: str | None = None
    pids: dict[str, int] = field(default_factory=dict)
    started: bool = False
    # A stack started here: the folder whose *.log files (services, NATS, PostgreSQL) are
    # kept when a measurement on it fails (loadtest.stack.keep_logs).
    log_dir: Path | None = None

    @property
    def base_url(self) -> str:
        return self.base_urls[0]

    @property
    def ws_urls(self) -> tuple[str, ...]:
        return tuple(
            url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"
            for url in self.base_urls
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "base_urls": list(self.base_urls),
            "nats_url": self.nats_url,
            "started_stack": self.started,
            "pids": dict(self.pids),
        }
