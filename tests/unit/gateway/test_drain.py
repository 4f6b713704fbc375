"""Graceful shutdown and bus outages, gateway side: the drain, close-after-flush, resync."""

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson

from services.common.contracts.errors import CloseCode
from services.gateway import drain
from services.gateway.hub import Hub, RoomChannel

from .test_connection import connection


class FakeConn:
    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.sent: list[str] = []
        self.closing: tuple[int, str] | None = None

    def send(self, text: str) -> None:
        self.sent.append(text)

    def close_after_flush(self, code: int, reason: str) -> None:
        self.closing = (code, reason)
        # The socket goes a moment later, as its handler ends.
        asyncio.get_running_loop().call_later(0.05, self.gw.connections.discard, self)


def gateway(n: int) -> Any:
    settings = SimpleNamespace(drain_spread_ms=1500, drain_timeout_seconds=5)
    gw = SimpleNamespace(settings=settings, draining=False, connections=set())
    gw.connections.update(FakeConn(gw) for _ in range(n))
    return gw


async def test_every_socket_is_told_to_reconnect_then_closed_with_1012() -> None:
    gw = gateway(3)
    conns = list(gw.connections)
    await asyncio.wait_for(drain.drain(gw), 2)
    assert gw.draining and not gw.connections
    for conn in conns:
        assert [orjson.loads(t) for t in conn.sent] == [
            {"type": "reconnect", "data": {"reason": "shutdown", "within_ms": 1500}}
        ]
        assert conn.closing == (CloseCode.SERVICE_RESTART, "server restarting")


async def test_a_second_drain_does_nothing() -> None:
    gw = gateway(1)
    gw.draining = True
    await drain.drain(gw)
    assert next(iter(gw.connections)).sent == []


async def test_the_drain_gives_up_waiting_after_its_timeout() -> None:
    gw = gateway(0)
    stuck = FakeConn(gw)
    stuck.close_after_flush = lambda *_a: None  # type: ignore[method-assign]  # never goes
    gw.connections.add(stuck)
    gw.settings.drain_timeout_seconds = 0.2
    await asyncio.wait_for(drain.drain(gw), 2)
    assert gw.connections == {stuck}


def test_after_a_bus_outage_every_local_member_is_asked_to_resync() -> None:
    hub = Hub(None, 0.25)  # type: ignore[arg-type]
    members = {code: [connection() for _ in range(n)] for code, n in (("AbC123", 2), ("XyZ789", 1))}
    for code, conns in members.items():
        channel = RoomChannel(code, 0.25)
        for conn, _sock in conns:
            channel.add_member(conn)
        hub.channels[code] = channel
    assert hub.ask_resync() == 3
    for code, conns in members.items():
        for _conn, sock in conns:
            frame = orjson.loads(sock.texts[-1])
            assert frame == {"type": "resync", "room": code, "data": {"reason": "bus_reconnected"}}
