"""gateway: real WebSocket clients, R rooms x M members (default 500 x 4).

Every member is a signed-in guest with its own socket, spread over the gateways round-robin
(members of one room on different gateways when there are several). In each room the first
member, its owner, queues a video and plays it; then the load is `seek`s at a steady total
rate, round-robin over the rooms, sent by each room's owner. Each seek names a position no
other seek of that room names, so each member's reader knows which command a `playback`
event answers and times command -> event at every member (the sender's clock and the
readers' are this process's). Every socket checks that its room's `v` strictly increases
from its join snapshot on; after the load, each socket must have reached its room's last
version, and every acknowledged seek must have reached every member.

Meanwhile `probes` more clients in a room of their own, playing, run clock sync and compute
the playback position (loadtest/clocksync.py).
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from services.common.contracts.commands import MAX_POSITION_MS, ROUTES

from ..clocksync import SyncProbes
from ..errors import LoadError
from ..pacing import until
from ..sequence import combine
from ..stats import Histogram
from ..wsclient import Socket, ensure_descriptors, open_socket, sign_in
from .base import VIDEO_ID, Defaults, Driver

SETTLE_S = 5.0
# Sockets opened at once: the gateways' accept backlog never sees thousands together.
CONNECT_BATCH = 50


@dataclass
class Seek:
    due: float
    expected: int  # members whose socket was open when it was sent
    got: int = 0
    acked: bool = False


class GatewayDriver(Driver):
    service = "gateway"
    transport = "WebSocket /ws (guests signed in by POST /auth/guest)"
    defaults = Defaults(rooms=500, members=4, rate=200.0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sockets: list[Socket] = []
        self.probe_sockets: list[Socket] = []
        self.room_codes: list[str] = []
        self.room_sockets: dict[str, list[Socket]] = {}
        self.pending: dict[tuple[str, int], Seek] = {}
        self.delivery = Histogram()
        self.missing_deliveries = 0
        self.probes: SyncProbes | None = None

    def op_timeout_s(self) -> float:
        return self.options.timeout_s or ROUTES["seek"].timeout_s

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "gateways": len(self.target.base_urls),
            "probes": self.options.probes,
        }

    def scenario(self) -> str:
        return (
            f"{super().scenario()} on {len(self.target.base_urls)} gateway(s); each room's "
            f"owner seeks; {self.options.probes} clock-sync probes in a playing room"
        )

    # -- setup ----------------------------------------------------------------------------

    async def setup(self) -> None:
        count = self.rooms * self.members + self.options.probes
        ensure_descriptors(count)
        t = time.monotonic()
        tokens = await sign_in(self.target.base_urls, count, self.options.setup_concurrency)
        self.progress.note(f"{count} guests signed in in {time.monotonic() - t:.1f} s")
        t = time.monotonic()
        urls = self.target.ws_urls
        opened: list[Socket] = []
        for first in range(0, count, CONNECT_BATCH):
            batch = range(first, min(first + CONNECT_BATCH, count))
            opened += await asyncio.gather(
                *(open_socket(urls[i % len(urls)], tokens[i], i, self._on_event) for i in batch)
            )
        self.sockets = opened[: self.rooms * self.members]
        self.probe_sockets = opened[self.rooms * self.members :]
        self.progress.note(f"{count} sockets open in {time.monotonic() - t:.1f} s")
        t = time.monotonic()
        slots = asyncio.Semaphore(self.options.setup_concurrency)

        async def room(i: int) -> None:
            async with slots:
                members = self.sockets[i * self.members : (i + 1) * self.members]
                self.room_codes[i] = await _playing_room(members, f"load {i}")
                self.room_sockets[self.room_codes[i]] = members

        self.room_codes = [""] * self.rooms
        await asyncio.gather(*(room(i) for i in range(self.rooms)))
        if self.probe_sockets:
            code = await _playing_room(self.probe_sockets, "load sync probes")
            self.probes = SyncProbes(self.probe_sockets, code)
        retries = sum(s.setup_retries for s in [*self.sockets, *self.probe_sockets])
        self.progress.note(
            f"{self.rooms} rooms x {self.members} members joined and playing "
            f"in {time.monotonic() - t:.1f} s"
            + (f" ({retries} steps sent again after a timeout)" if retries else "")
        )

    # -- the load -------------------------------------------------------------------------

    async def load_starting(self) -> None:
        if self.probes is not None:
            self.probes.start()

    async def load_stopped(self) -> None:
        if self.probes is not None:
            await self.probes.stop()

    async def operation(self, index: int, due: float) -> None:
        code = self.room_codes[index % self.rooms]
        turn = index // self.rooms
        # Unique per room (a day of positions, 1 s apart), so an event names its command.
        position = (turn % (MAX_POSITION_MS // 1000 - 1) + 1) * 1000
        members = self.room_sockets[code]
        key = (code, position)
        seek = self.pending[key] = Seek(due, sum(1 for m in members if not m.closed))
        tally = self.tallies["seek"]
        try:
            reply = await members[0].request(
                "seek", {"position_ms": position}, code, self.op_timeout_s()
            )
        except TimeoutError:
            tally.failed("timeout", acked=False)
            self._forget(key, seek)
            return
        except LoadError:  # the socket closed under it
            tally.failed("socket_closed", acked=False)
            self._forget(key, seek)
            return
        latency_ms = (time.perf_counter() - due) * 1000
        if reply.get("ok"):
            tally.ok(latency_ms)
            seek.acked = True
            if seek.got >= seek.expected:
                del self.pending[key]
        else:
            tally.failed(str((reply.get("error") or {}).get("code")))
            self._forget(key, seek)

    def _forget(self, key: tuple[str, int], seek: Seek) -> None:
        """A seek that failed sends no event (or may have: then it is not waited for)."""
        if self.pending.get(key) is seek:
            del self.pending[key]

    def _on_event(self, socket: Socket, frame: dict[str, Any], at: float) -> None:
        if frame.get("type") != "playback":
            return
        position = (frame.get("data") or {}).get("position_ms")
        key = (str(frame["room"]), position if isinstance(position, int) else -1)
        seek = self.pending.get(key)
        if seek is None:
            return  # the setup's play, or a seek already given up on
        self.delivery.add((at - seek.due) * 1000)
        seek.got += 1
        if seek.acked and seek.got >= seek.expected:
            del self.pending[key]

    def lost_so_far(self) -> int:
        return sum(s.stream.lost for s in self.sockets if s.stream is not None)

    # -- after ----------------------------------------------------------------------------

    async def settle(self) -> dict[str, Any]:
        sync = self.probes.report() if self.probes is not None else None
        await until(lambda: not any(s.acked for s in self.pending.values()), SETTLE_S)
        self.missing_deliveries = sum(s.expected - s.got for s in self.pending.values() if s.acked)
        streams = []
        for members in [*self.room_sockets.values(), self.probe_sockets]:
            alive = [m.stream for m in members if m.stream is not None]
            final = max((s.highest or 0 for s in alive), default=None)
            for stream in alive:
                stream.close(final)
                streams.append(stream)
        events = combine(streams)
        everyone = [*self.sockets, *self.probe_sockets]
        closed = sum(1 for s in everyone if s.closed)
        notices: dict[str, int] = {}
        for s in everyone:
            for kind, n in s.notices.items():
                notices[kind] = notices.get(kind, 0) + n
        out: dict[str, Any] = {
            # The same loss can show in both: a gap in a socket's versions, and a seek that
            # did not reach that member.
            "lost": events["lost"] + self.missing_deliveries,
            "reordered": events["reordered"] + events["duplicates"],
            "events": events,
            "delivery_ms": self.delivery.summary(),
            "deliveries": {
                "received": self.delivery.count,
                "missing": self.missing_deliveries,
                "per_s": round(self.delivery.count / max(self.options.duration_s, 1e-9), 1),
            },
            "sockets": {
                "open": len(everyone) - closed,
                "closed": closed,
                "stray_events": sum(s.stray_events for s in everyone),
                "notices": notices,
            },
            # Setup steps sent again after `timeout` / `unavailable` (Socket.call).
            "setup_retries": sum(s.setup_retries for s in everyone),
        }
        if closed:
            out["lost"] += closed  # a dropped socket misses what follows
        out["notes"] = [
            f"deliveries: {self.delivery.count} seek events reached members "
            f"({out['deliveries']['per_s']}/s), {self.missing_deliveries} missing; sockets: "
            f"{len(everyone) - closed} open, {closed} closed"
            + (f"; notices {notices}" if notices else "")
        ]
        if sync is not None:
            out["sync"] = sync
        return out

    async def teardown(self) -> None:
        if self.probes is not None:
            await self.probes.stop()
        everyone = [*self.sockets, *self.probe_sockets]
        for first in range(0, len(everyone), 200):
            await asyncio.gather(*(s.close() for s in everyone[first : first + 200]))


async def _playing_room(members: list[Socket], name: str) -> str:
    """The first member creates a room (anyone may control it), everyone joins, the first
    queues a video and plays it: without players it plays at once."""
    owner = members[0]
    created = await owner.call("room.create", {"name": name, "control_mode": "any"})
    code = str(created["room"]["code"])
    for member in members:
        await member.join(code)
    await owner.call("queue.add", {"video_id": VIDEO_ID}, code)
    await owner.call("play", {}, code)
    return code
