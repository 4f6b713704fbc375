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


def _member_order(m: dict[str, Any]) -> tuple[float, str]:
    """A snapshot's order of members: (joined_at_ms, user_id); without joined_at_ms, last."""
    joined = m.get("joined_at_ms")
    return (joined if isinstance(joined, int | float) else float("inf"), str(m.get("user_id")))


def reduce_members(members: list[dict[str, Any]], data: Any) -> list[dict[str, Any]]:
    """A `members` event: the whole list (an array) replaces it; a delta `{"changed",
    "gone"}` replaces the changed users' entries in place, inserts new ones at their
    (joined_at_ms, user_id) place and drops the gone (the JS client's mergeMembers)."""
    if isinstance(data, list):
        return data
    gone = set(data.get("gone", []))
    changed = {m["user_id"]: m for m in data.get("changed", [])}
    out = [changed.pop(m["user_id"], m) for m in members if m["user_id"] not in gone]
    for m in changed.values():
        at = len(out)
        while at > 0 and _member_order(out[at - 1]) > _member_order(m):
            at -= 1
        out.insert(at, m)
    return out


def member_entries(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries a `members` event carries: the whole list, or a delta's `changed`."""
    data = event["data"]
    return data if isinstance(data, list) else data["changed"]


def member_news(event: dict[str, Any], user_id: str) -> tuple[bool, dict[str, Any] | None]:
    """What a `members` event says of one user: (whether it says anything, their entry or
    None when they are not listed). A whole list speaks of everyone; a delta only of the
    users in `changed` and `gone`."""
    data = event["data"]
    found = next((m for m in member_entries(event) if m["user_id"] == user_id), None)
    return found is not None or isinstance(data, list) or user_id in data["gone"], found


def apply_event(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    part, v = event["type"], event["v"]
    if part not in PARTS or v <= state["versions"][part]:
        return state
    parts = dict(state["parts"])
    data = event["data"]
    if part == "chat":
        parts[part] = reduce_chat(parts["chat"], data)
    elif part == "members":
        parts[part] = reduce_members(parts["members"], data)
    else:
        parts[part] = data
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
