"""A real WebSocket client for tests: request/reply by id, events collected per room, and
the same snapshot + event reducer the JS client implements (for the consistency tests)."""

import asyncio
import contextlib
import itertools
import uuid
from typing import Any

import httpx
import orjson
import websockets

PARTS = ("playback", "members", "settings", "queue", "chat")


class ReplyError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def guest(base_url: str, name: str) -> tuple[str, dict[str, Any]]:
    reply = httpx.post(f"{base_url}/auth/guest", json={"name": name}, timeout=10)
    reply.raise_for_status()
    body = reply.json()
    return body["token"], body["user"]


def apply_snapshot(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {
        "parts": {p: snapshot[p] for p in PARTS},
        "room": snapshot["room"],
        "versions": dict(snapshot["versions"]),
    }


CHAT_KEEP = 200  # as the JS client's


def reduce_chat(chat: list[dict[str, Any]], data: dict[str, Any]) -> list[dict[str, Any]]:
    """One new message, or `{"deleted": id}`: drop that message (the JS client's reduceChat)."""
    if isinstance(data.get("deleted"), str) and "text" not in data:
        return [m for m in chat if m.get("id") != data["deleted"]]
    return [*chat, data][-CHAT_KEEP:]


def apply_event(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    part, v = event["type"], event["v"]
    if part not in PARTS or v <= state["versions"][part]:
        return state
    parts = dict(state["parts"])
    parts[part] = reduce_chat(parts["chat"], event["data"]) if part == "chat" else event["data"]
    return {**state, "parts": parts, "versions": {**state["versions"], part: v}}


class WsClient:
    def __init__(self, ws: Any, name: str) -> None:
        self.ws = ws
        self.name = name
        self.events: list[dict[str, Any]] = []
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.raw_replies: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._ids = (f"{uuid.uuid4().hex[:8]}-{n}" for n in itertools.count(1))
        self._reader = asyncio.create_task(self._read())
        self.closed: asyncio.Future[tuple[int | None, str]] = (
            asyncio.get_running_loop().create_future()
        )

    @classmethod
    async def connect(cls, ws_url: str, token: str, name: str = "client") -> "WsClient":
        ws = await websockets.connect(f"{ws_url}?token={token}", max_size=2**22)
        return cls(ws, name)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = orjson.loads(raw)
                if "re" in frame:
                    self.raw_replies.append(frame)
                    fut = self.replies.pop(frame["re"], None) if frame["re"] else None
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                else:
                    self.events.append(frame)
                async with self._changed:
                    self._changed.notify_all()
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self.closed.done():
                self.closed.set_result((self.ws.close_code, self.ws.close_reason or ""))
            async with self._changed:
                self._changed.notify_all()

    def new_id(self) -> str:
        return next(self._ids)

    async def send_raw(self, payload: str | bytes) -> None:
        await self.ws.send(payload)

    async def request(
        self,
        type_: str,
        data: dict[str, Any] | None = None,
        room: str | None = None,
        request_id: str | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        request_id = request_id or self.new_id()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[request_id] = fut
        frame: dict[str, Any] = {"id": request_id, "type": type_, "data": data or {}}
        if room is not None:
            frame["room"] = room
        await self.ws.send(orjson.dumps(frame).decode())
        return await asyncio.wait_for(fut, timeout)

    async def call(self, type_: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
        reply = await self.request(type_, data, **kw)
        if not reply["ok"]:
            raise ReplyError(reply["error"]["code"], reply["error"]["message"])
        return reply["data"]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        """The first event (already received or coming) that matches."""

        async def find() -> dict[str, Any]:
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                async with self._changed:
                    await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    async def wait_playback(self, status: str, timeout: float = 10.0, **match: Any) -> dict:
        def ok(e: dict[str, Any]) -> bool:
            return (
                e["type"] == "playback"
                and e["data"]["status"] == status
                and all(e["data"].get(k) == v for k, v in match.items())
            )

        return (await self.wait_for(ok, timeout))["data"]

    def clear(self) -> None:
        self.events.clear()

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self.ws.close()
