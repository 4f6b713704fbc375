"""A load driver's setup step answered `timeout` or `unavailable` is sent again with the same
request id (loadtest/wsclient.py, Socket.call), as the clients do; other errors are not, and
the attempts are bounded. Over a real WebSocket on loopback, against a stand-in gateway."""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import pytest_asyncio
from websockets.asyncio.server import ServerConnection, serve

from loadtest import wsclient
from loadtest.errors import LoadError
from loadtest.wsclient import Socket


def _gateway(answers: list[str], seen: list[dict[str, Any]]) -> Callable[..., Any]:
    """Answers the requests in turn with these error codes, then with ok."""

    async def handler(ws: ServerConnection) -> None:
        async for raw in ws:
            frame = orjson.loads(raw)
            seen.append(frame)
            code = answers.pop(0) if answers else None
            reply = (
                {"re": frame["id"], "ok": False, "error": {"code": code, "message": "..."}}
                if code
                else {"re": frame["id"], "ok": True, "data": {"n": len(seen)}}
            )
            await ws.send(orjson.dumps(reply).decode())

    return handler


@pytest_asyncio.fixture
async def stand_in(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setattr(asyncio, "sleep", _no_wait)  # the backoff, not the test's time
    servers = []

    async def start(answers: list[str]) -> tuple[Socket, list[dict[str, Any]]]:
        seen: list[dict[str, Any]] = []
        server = await serve(_gateway(answers, seen), "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        ws = await wsclient.connect(f"ws://127.0.0.1:{port}")
        return Socket(0, ws, lambda *_: None), seen

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


_real_sleep = asyncio.sleep


async def _no_wait(_seconds: float) -> None:
    await _real_sleep(0)


async def test_a_step_answered_timeout_is_sent_again_with_the_same_id(stand_in: Any) -> None:
    socket, seen = await stand_in(["timeout", "unavailable"])
    try:
        assert await socket.call("play", {}, "room1") == {"n": 3}
    finally:
        await socket.close()
    assert len(seen) == 3
    assert len({frame["id"] for frame in seen}) == 1
    assert socket.setup_retries == 2


async def test_other_errors_and_the_last_attempt_fail_the_step(stand_in: Any) -> None:
    forbidden, seen = await stand_in(["forbidden"])
    try:
        with pytest.raises(LoadError, match="forbidden"):
            await forbidden.call("play", {}, "room1")
    finally:
        await forbidden.close()
    assert len(seen) == 1

    stuck, seen = await stand_in(["timeout"] * wsclient.SETUP_ATTEMPTS)
    try:
        with pytest.raises(LoadError, match="timeout"):
            await stuck.call("play", {}, "room1")
    finally:
        await stuck.close()
    assert len(seen) == wsclient.SETUP_ATTEMPTS
