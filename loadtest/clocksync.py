"""Sync under load: probe sockets in one playing room run the protocol's clock sync while the
load runs, and compute where the video is, as the JS client does.

Clock sync (clients/js/sharetube-client.js, `syncClock`): sequential `time.ping {t0}`, each
answered by the gateway with its wall clock `server_ms`; a sample's offset is
server_ms - (t0 + rtt / 2) and the sample with the smallest round trip is kept. Every process
here runs on this machine's clock, so the true offset is ~0 and |estimated offset| is the
estimate's error: half the asymmetry of the kept round trip, which a loaded gateway or event
loop inflates.

Spread: every TICK_S, at one local instant, each probe computes the room's expected position
(`expectedPositionMs`: position_ms + (server_now - anchor_ms) * rate while playing) with its
own offset and its own copy of the playback; the spread is max - min over the probes.
"""

import asyncio
import contextlib
import time
from typing import Any

from .stats import Histogram, describe
from .wsclient import Socket

SAMPLES = 8  # the JS client's clockSamples
RESYNC_S = 1.0  # the JS client waits a minute; here a sample a second measures the error
TICK_S = 0.05
PING_TIMEOUT_S = 2.0  # the JS client's pingTimeoutMs


def wall_ms() -> float:
    return time.time_ns() / 1e6


def expected_position_ms(playback: dict[str, Any] | None, server_now_ms: float) -> float | None:
    if not playback or playback.get("status") == "idle":
        return None
    position = float(playback.get("position_ms") or 0)
    anchor = playback.get("anchor_ms")
    if playback.get("status") == "playing" and anchor and server_now_ms > anchor:
        position += (server_now_ms - anchor) * float(playback.get("rate") or 1)
    duration = playback.get("duration_ms")
    return min(max(position, 0.0), duration) if duration else max(position, 0.0)


class SyncProbes:
    def __init__(self, probes: list[Socket], room: str) -> None:
        self.probes = probes
        self.room = room
        self.offsets: dict[int, float] = {}  # probe index -> its latest estimate
        self.offset_errors: list[float] = []
        self.rtt = Histogram()
        self.spreads: list[float] = []
        self.failed_pings = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._clock(p)) for p in self.probes]
        self._tasks.append(asyncio.create_task(self._sample()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _clock(self, probe: Socket) -> None:
        while not probe.closed:
            best: tuple[float, float] | None = None  # (rtt, offset)
            for _ in range(SAMPLES):  # sequential: queued pings would inflate every rtt
                t0 = wall_ms()
                try:
                    reply = await probe.request("time.ping", {"t0": t0}, None, PING_TIMEOUT_S)
                except Exception:  # a timeout, or the socket closed
                    self.failed_pings += 1
                    continue
                t1 = wall_ms()
                if not reply.get("ok"):
                    self.failed_pings += 1
                    continue
                rtt = t1 - t0
                self.rtt.add(rtt)
                offset = float(reply["data"]["server_ms"]) - (t0 + rtt / 2)
                if best is None or rtt < best[0]:
                    best = (rtt, offset)
            if best is not None:
                self.offsets[probe.index] = best[1]
                self.offset_errors.append(abs(best[1]))
            await asyncio.sleep(RESYNC_S)

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = wall_ms()  # one instant for every probe
            positions = []
            for probe in self.probes:
                offset = self.offsets.get(probe.index)
                playback = probe.playback
                if offset is None or not playback or playback.get("status") != "playing":
                    break
                if (playback.get("anchor_ms") or 0) > now + offset:
                    break  # a start still ahead: every client holds still until then
                positions.append(expected_position_ms(playback, now + offset))
            else:
                if len(positions) > 1 and None not in positions:
                    self.spreads.append(max(positions) - min(positions))  # type: ignore[type-var]

    def report(self) -> dict[str, Any]:
        return {
            "probes": len(self.probes),
            "room": self.room,
            "clock_syncs": len(self.offset_errors),
            "samples_per_sync": SAMPLES,
            "offset_error_ms": describe(self.offset_errors),
            "ping_rtt_ms": self.rtt.summary(),
            "failed_pings": self.failed_pings,
            "spread_ms": describe(self.spreads),
        }
