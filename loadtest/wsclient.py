"""A lean WebSocket client for thousands of sockets in one process.

One reader task per socket decodes each frame once: a reply resolves its request's future; a
room event is checked for order (its `v` must follow the last one: the gateway forwards a
room's events in order) and handed to the driver. A join's reply sets where the socket's
sequence starts (the snapshot's `v`), in the reader itself, so no event can slip in between.
"""

import asyncio
import contextlib
import itertools
import resource
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect

from .errors import LoadError
from .sequence import VersionStream

# A members event of a large room is big; the gateway itself refuses frames past 1 MB.
MAX_FRAME = 16 * 1024 * 1024
# Descriptors this process keeps beyond one per socket.
FD_MARGIN = 256

EventHook = Callable[["Socket", dict[str, Any], float], None]

# A setup step is sent at most this many times when answered with one of these codes.
SETUP_ATTEMPTS = 3
RETRIED = frozenset({"timeout", "unavailable"})


class Socket:
    def __init__(self, index: int, ws: ClientConnection, on_event: EventHook) -> None:
        self.index = index
        self.ws = ws
        self.on_event = on_event
        self.room: str | None = None
        self.stream: VersionStream | None = None  # from the join's reply on
        self.playback: dict[str, Any] | None = None  # the room's latest, as this socket knows
        self.stray_events = 0  # events before any join (must not happen)
        self.notices: dict[str, int] = {}  # evicted / reconnect / resync frames
        self.setup_retries = 0  # setup steps sent again after `timeout` / `unavailable`
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._joins: set[str] = set()
        self._ids = (f"q{n}" for n in itertools.count(1))
        self.reader = asyncio.create_task(self._read())

    @property
    def closed(self) -> bool:
        return self.reader.done()

    async def _read(self) -> None:
        loads, clock = orjson.loads, time.perf_counter
        try:
            while True:
                raw = await self.ws.recv(decode=False)
                at = clock()
                frame = loads(raw)
                if "re" in frame:
                    self._reply(frame)
                elif "v" in frame:
                    self._event(frame, at)
                else:
                    kind = str(frame.get("type"))
                    self.notices[kind] = self.notices.get(kind, 0) + 1
        except websockets.ConnectionClosed:
            pass
        finally:
            for fut in self._replies.values():
                if not fut.done():
                    fut.set_exception(LoadError(f"socket {self.index} closed"))

    def _reply(self, frame: dict[str, Any]) -> None:
        request_id = frame["re"]
        if request_id in self._joins and frame.get("ok"):
            self._joins.discard(request_id)
            snapshot = frame["data"]
            self.stream = VersionStream(0.0, after=int(snapshot["v"]))
            self.playback = snapshot.get("playback")
        fut = self._replies.pop(request_id, None)
        if fut is not None and not fut.done():
            fut.set_result(frame)

    def _event(self, frame: dict[str, Any], at: float) -> None:
        if self.stream is None:
            self.stray_events += 1
            return
        self.stream.see(int(frame["v"]), at)
        if frame.get("type") == "playback":
            self.playback = frame.get("data")
        self.on_event(self, frame, at)

    async def request(
        self,
        type_: str,
        data: dict[str, Any],
        room: str | None,
        timeout_s: float,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """The reply frame; TimeoutError when none came in time. `request_id`: the id of an
        earlier request this one repeats (applied once: the services remember replies)."""
        request_id = request_id or next(self._ids)
        frame: dict[str, Any] = {"id": request_id, "type": type_, "data": data}
        if room is not None:
            frame["room"] = room
        if type_ == "join":
            self._joins.add(request_id)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[request_id] = fut
        try:
            await self.ws.send(orjson.dumps(frame).decode())
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._replies.pop(request_id, None)

    async def call(
        self, type_: str, data: dict[str, Any] | None = None, room: str | None = None
    ) -> dict[str, Any]:
        """A setup step that must succeed: its reply data. A step answered `timeout` or
        `unavailable` (a service slower than the gateway's wait while the setup loads the
        one core) is sent again with the same request id, as the clients do, at most
        SETUP_ATTEMPTS times in all; each repeat is counted in `setup_retries`."""
        request_id = next(self._ids)
        for attempt in range(SETUP_ATTEMPTS):
            reply = await self.request(type_, data or {}, room, 30.0, request_id)
            if reply.get("ok"):
                return reply.get("data") or {}
            code = (reply.get("error") or {}).get("code")
            if code not in RETRIED or attempt == SETUP_ATTEMPTS - 1:
                break
            self.setup_retries += 1
            await asyncio.sleep(0.5 * 2**attempt)
        raise LoadError(f"{type_} failed: {code}")

    async def join(self, room: str, player: bool = False) -> dict[str, Any]:
        self.room = room
        return await self.call("join", {"player": player}, room)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.reader


async def sign_in(base_urls: tuple[str, ...], count: int, concurrency: int) -> list[str]:
    """`count` guest tokens (POST /auth/guest), spread over the gateways."""
    slots = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=15.0, trust_env=False) as http:

        async def one(i: int) -> str:
            async with slots:
                try:
                    return await guest_token(http, base_urls[i % len(base_urls)], f"load{i}")
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    raise LoadError(f"guest sign-in failed: {exc!r}") from exc

        return await asyncio.gather(*(one(i) for i in range(count)))


async def guest_token(http: httpx.AsyncClient, base_url: str, name: str, attempts: int = 3) -> str:
    """One guest's token (POST /auth/guest), tried again after a short wait when it fails;
    the last failure is raised (httpx.HTTPError, KeyError or ValueError)."""
    for attempt in range(attempts):
        try:
            reply = await http.post(f"{base_url}/auth/guest", json={"name": name})
            reply.raise_for_status()
            return str(reply.json()["token"])
        except (httpx.HTTPError, KeyError, ValueError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


async def open_socket(url: str, token: str, index: int, on_event: EventHook) -> Socket:
    for attempt in range(3):
        try:
            ws = await connect(
                f"{url}?token={token}",
                compression=None,  # the gateway does not offer it (services/gateway/server.py)
                max_size=MAX_FRAME,
                ping_interval=None,  # the gateway pings; answering is enough
                open_timeout=15,
                close_timeout=2,
                proxy=None,
            )
            return Socket(index, ws, on_event)
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            if attempt == 2:
                raise LoadError(f"socket {index} did not open: {exc!r}") from exc
            await asyncio.sleep(0.25 * (attempt + 1))
    raise AssertionError("unreachable")


def ensure_descriptors(sockets: int) -> None:
    """Raise this process's open-file limit to fit `sockets` (up to the hard limit);
    processes started afterwards (a --start stack's gateway) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = sockets + FD_MARGIN
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise LoadError(f"{sockets} sockets need {need} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
