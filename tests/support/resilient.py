"""A test client that behaves like the JS client with `reconnect` on, for the fault tests.

It reconnects by itself (to any of several gateways, as a load balancer would send it),
re-joins its rooms from a fresh snapshot, resyncs on a version gap or a `resync` frame, and
sends every command with a request id that it keeps across retries: a command is retried on
`unavailable` / `timeout` / a dropped socket until it is answered, and the server applies an
id once. What was acknowledged is recorded, so a test can check that none of it was lost.
"""

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import websockets

from .client import ReplyError, apply_event, apply_snapshot

log = logging.getLogger(__name__)

# Answers that mean "not now", never "no": the same request id is sent again.
RETRYABLE = frozenset({"unavailable", "timeout"})


class Disconnected(Exception):
    pass


@dataclass
class Attempted:
    """One command as the caller saw it: how long it took to be acknowledged."""

    type: str
    request_id: str
    started: float
    finished: float = 0.0
    tries: int = 0
    reply: Any = None


@dataclass
class ResilientClient:
    urls: list[str]
    token: str
    name: str
    ws: Any = None
    rooms: dict[str, dict[str, Any]] = field(default_factory=dict)  # code -> reducer state
    acked: list[Attempted] = field(default_factory=list)
    reconnects: int = 0
    resyncs: int = 0
    close_codes: list[int | None] = field(default_factory=list)
    hints: list[dict[str, Any]] = field(default_factory=list)  # reconnect frames seen

    def __post_init__(self) -> None:
        self._ids = (f"{uuid.uuid4().hex[:8]}-{n}" for n in itertools.count(1))
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._connected = asyncio.Event()
        self._url_index = 0
        self._reader: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._stopping = False
        self._resyncing: set[str] = set()
        # Request ids of joins and syncs in flight -> their room: the reader installs the
        # snapshot the moment the reply is read, before the events that follow it.
        self._snapshot_ids: dict[str, str] = {}

    # -- connection ---------------------------------------------------------------------

    async def start(self) -> "ResilientClient":
        self._keeper = asyncio.create_task(self._keep_connected())
        await asyncio.wait_for(self._connected.wait(), 30)
        return self

    async def _keep_connected(self) -> None:
        delay = 0.1
        while not self._stopping:
            url = self.urls[self._url_index % len(self.urls)]
            try:
                ws = await websockets.connect(
                    f"{url}?token={self.token}", max_size=2**24, open_timeout=5
                )
            except (OSError, websockets.InvalidStatus, websockets.InvalidHandshake, TimeoutError):
                self._url_index += 1  # the load balancer sends us elsewhere
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            delay = 0.1
            self.ws = ws
            self._reader = asyncio.create_task(self._read(ws))
            self._connected.set()
            rejoined = asyncio.create_task(self._rejoin_all())
            await self._reader
            rejoined.cancel()
            self._connected.clear()
            self.ws = None
            self.close_codes.append(ws.close_code)
            for fut in self._replies.values():
                if not fut.done():
                    fut.set_exception(Disconnected())
            self._replies.clear()
            if self._stopping:
                return
            self.reconnects += 1
            # A load balancer sends the next connection to a gateway that is up (a draining
            # one has left its endpoints): here, the next URL.
            self._url_index += 1

    async def _rejoin_all(self) -> None:
        for room in list(self.rooms):
            with contextlib.suppress(Exception):
                await self.join(room)

    async def _read(self, ws: Any) -> None:
        try:
            async for raw in ws:
                frame = orjson.loads(raw)
                if "re" in frame:
                    room = self._snapshot_ids.get(frame["re"]) if frame["re"] else None
                    if room is not None and frame["ok"] and room in self.rooms:
                        self._settle(room, frame["data"])
                    fut = self._replies.pop(frame["re"], None) if frame["re"] else None
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                elif frame.get("type") == "reconnect":
                    self.hints.append(frame)
                elif frame.get("type") == "resync":
                    self._resync(frame["room"])
                elif frame.get("room") in self.rooms and "v" in frame:
                    self._apply(frame)
        except websockets.ConnectionClosed:
            pass

    def _apply(self, event: dict[str, Any]) -> None:
        state = self.rooms[event["room"]]
        if not state:
            return  # the snapshot is on its way; its join/sync replays nothing we need
        last = state["last_v"]
        new = apply_event(state, event)
        new["last_v"] = max(last, event["v"])
        self.rooms[event["room"]] = new
        if event["v"] > last + 1:
            self._resync(event["room"])  # an event was lost (a publisher died, the bus blinked)

    def _resync(self, room: str) -> None:
        if room in self._resyncing or room not in self.rooms:
            return
        self._resyncing.add(room)
        self.resyncs += 1

        async def sync() -> None:
            request_id = next(self._ids)
            self._snapshot_ids[request_id] = room
            try:
                await self.request("room.sync", {}, room, request_id)
            except (Disconnected, TimeoutError):
                pass  # the reconnect re-joins with a fresh snapshot anyway
            finally:
                self._resyncing.discard(room)
                self._snapshot_ids.pop(request_id, None)

        asyncio.get_running_loop().create_task(sync())

    def _settle(self, room: str, snapshot: dict[str, Any]) -> None:
        state = apply_snapshot(snapshot)
        # After a snapshot at v the gateway forwards the room's events in order from v + 1:
        # anything later first is a lost event.
        state["last_v"] = snapshot["v"]
        self.rooms[room] = state

    async def stop(self) -> None:
        self._stopping = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._keeper is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._keeper, 5)

    # -- requests -----------------------------------------------------------------------

    async def request(
        self,
        type_: str,
        data: dict[str, Any],
        room: str | None = None,
        request_id: str | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """One try on the current socket; raises Disconnected when there is none or it drops."""
        ws = self.ws
        if ws is None:
            raise Disconnected()
        request_id = request_id or next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        # A drop fails it after a timeout may have given up on it: nobody must have to look.
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._replies[request_id] = fut
        frame: dict[str, Any] = {"id": request_id, "type": type_, "data": data}
        if room is not None:
            frame["room"] = room
        try:
            await ws.send(orjson.dumps(frame).decode())
        except websockets.ConnectionClosed as exc:
            self._replies.pop(request_id, None)
            raise Disconnected() from exc
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._replies.pop(request_id, None)

    async def command(
        self,
        type_: str,
        data: dict[str, Any],
        room: str | None = None,
        deadline_s: float = 60,
        request_id: str | None = None,
    ) -> Any:
        """Until answered: retried with the same request id on a drop or a retryable error."""
        attempt = Attempted(type_, request_id or next(self._ids), time.monotonic())
        give_up = attempt.started + deadline_s
        while True:
            attempt.tries += 1
            try:
                reply = await self.request(type_, data, room, attempt.request_id, timeout=8)
            except (Disconnected, TimeoutError):
                reply = None
            if reply is not None and reply["ok"]:
                attempt.finished = time.monotonic()
                attempt.reply = reply["data"]
                self.acked.append(attempt)
                return reply["data"]
            if reply is not None and reply["error"]["code"] not in RETRYABLE:
                raise ReplyError(reply["error"]["code"], reply["error"]["message"])
            if time.monotonic() > give_up:
                raise TimeoutError(f"{type_} not acknowledged within {deadline_s} s")
            if self.ws is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._connected.wait(), 5)
            else:
                await asyncio.sleep(0.2)

    async def join(self, room: str) -> dict[str, Any]:
        self.rooms.setdefault(room, {})
        request_id = next(self._ids)
        self._snapshot_ids[request_id] = room
        try:
            return await self.command("join", {}, room, request_id=request_id)
        finally:
            self._snapshot_ids.pop(request_id, None)

    def parts(self, room: str) -> dict[str, Any]:
        return self.rooms[room]["parts"]
