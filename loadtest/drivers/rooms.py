"""rooms: playback commands straight to the rooms service over the bus.

R rooms of M members (made-up users, sockets under a made-up gateway id), each with a video
queued and playing; then seek, pause, play and rate in turn, round-robin over the rooms and
their members, on st.rooms.cmd.<command> with the gateway's envelope. Every room's events on
st.room.<code>.evt.> must carry versions 1, 2, 3, ... (loadtest/sequence.py).
"""

from typing import Any

from services.common.contracts.commands import MAX_POSITION_MS

from ..busclient import envelope
from .base import VIDEO_ID, Defaults
from .busdriver import BusDriver

KINDS = ("seek", "pause", "play", "rate")
RATES = (1.5, 1.0)  # alternating, so every rate command changes the room


class RoomsDriver(BusDriver):
    service = "rooms"
    defaults = Defaults(rooms=50, members=4, rate=200.0)

    def scenario(self) -> str:
        return f"{super().scenario()}; seek, pause, play and rate in turn, round-robin"

    async def prepare(self) -> None:
        assert self.population is not None
        for room in self.population.rooms:
            await self.population.expect("queue.add", room.owner, room.code, {"video_id": VIDEO_ID})
            await self.population.expect("play", room.owner, room.code)

    async def operation(self, index: int, due: float) -> None:
        assert self.population is not None and self.bus is not None
        rooms = self.population.rooms
        room = rooms[index % len(rooms)]
        turn = index // len(rooms)
        kind = KINDS[turn % len(KINDS)]
        data: dict[str, Any] = {}
        if kind == "seek":
            data["position_ms"] = (turn * 1000) % MAX_POSITION_MS
        elif kind == "rate":
            data["rate"] = RATES[(turn // len(KINDS)) % len(RATES)]
        actor = room.members[turn % len(room.members)]
        self.count(kind, await self.bus.request(kind, envelope(actor, room.code, data), due))
