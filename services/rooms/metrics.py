"""The rooms service's metrics (STYLE.md point 10), beside the shared command metrics:

- `sharetube_rooms_active` (gauge): rooms with at least one member online, read from the
  database when scraped (every replica reports the same figure; dashboards take `max`).
- `sharetube_rooms_members_online` (gauge): users online in some room, the same way.
- `sharetube_rooms_playback_commands_total{command, code}` (counter): play, pause, seek,
  skip, restart, rate, ready by outcome code.
"""

from prometheus_client import Counter, Gauge

from services.common import health
from services.common.bus import CommandRouter

from .service import RoomsService

ROOMS_ACTIVE = Gauge("sharetube_rooms_active", "Rooms with at least one member online")
MEMBERS_ONLINE = Gauge("sharetube_rooms_members_online", "Users online in some room")
PLAYBACK_COMMANDS = Counter(
    "sharetube_rooms_playback_commands_total",
    "Playback commands by outcome code",
    ["command", "code"],
)

PLAYBACK = frozenset({"play", "pause", "seek", "skip", "restart", "rate", "ready"})


def attach(router: CommandRouter, service: RoomsService) -> None:
    def observe(command: str, code: str) -> None:
        if command in PLAYBACK:
            PLAYBACK_COMMANDS.labels(command, code).inc()

    async def refresh() -> None:
        figures = await service.figures()
        ROOMS_ACTIVE.set(figures["rooms"])
        MEMBERS_ONLINE.set(figures["users_online"])

    router.observe(observe)
    health.before_scrape(refresh)
