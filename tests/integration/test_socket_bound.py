"""The bound on a socket's unread backlog, on a real loopback socket and a real event loop
(uvloop, as the gateway runs, and asyncio's own): room events go out through the transport's
write with no check in Python (hub.RoomChannel._fan_out), so it is the transport that must
tell the gateway when a client stopped reading; the socket is then dropped with 4008 while a
member that reads gets every event."""

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any

import pytest
import uvloop

from services.common.contracts.errors import CloseCode
from services.common.contracts.models import UserRef
from services.gateway.connection import Connection
from services.gateway.hub import RoomChannel
from services.gateway.metrics import SLOW_CONSUMER_CLOSES
from services.gateway.wire import text_frame
from services.gateway.wsserver import ClientSocket
from tests.support.loopback import serve, slow_reader

pytestmark = pytest.mark.integration

ROOM = "AbC123"
BOUND = 64 * 1024
EVENT_BYTES = 8 * 1024
MAX_EVENTS = 4096  # 32 MB: far past any kernel buffer, so the loop always ends


def event(v: int) -> bytes:
    body = b'{"type":"chat","room":"%s","v":%d,"data":"' % (ROOM.encode(), v)
    return body + b"x" * (EVENT_BYTES - len(body) - 2) + b'"}'


def slow_consumer_closes() -> float:
    (metric,) = SLOW_CONSUMER_CLOSES.collect()
    return next(s.value for s in metric.samples if s.name.endswith("_total"))


class Closes(ClientSocket):
    """The gateway's socket protocol, recording the close it was asked for."""

    __slots__ = ("closes",)

    def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))
        super().close(code, reason)


async def scenario() -> dict[str, Any]:
    loop = asyncio.get_running_loop()

    def make() -> Closes:
        proto = Closes(None, SimpleNamespace(connections=set()))
        proto.closes = []
        return proto

    accepted = await serve(make, 2)
    server, port, protocols = accepted.server, accepted.port, accepted.protocols
    stalled = slow_reader()  # reads nothing from here
    reader, _writer = None, None
    try:
        await loop.sock_connect(stalled, ("127.0.0.1", port))
        reader, _writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.wait_for(accepted.all_in.wait(), 5)
        stalled_proto, reading_proto = protocols
        users = [UserRef(id=f"u{i}", name=f"u{i}") for i in range(2)]
        stalled_conn = Connection(stalled_proto, users[0], "gw:1", BOUND)
        reading_conn = Connection(reading_proto, users[1], "gw:2", BOUND)
        channel = RoomChannel(ROOM, 0.05)
        channel.add_member(stalled_conn)
        channel.add_member(reading_conn)
        channel.settle(0)
        closes_before = slow_consumer_closes()

        received = 0
        frame_bytes = len(text_frame(event(1)))
        sent = 0
        backlog_at_close = None
        for v in range(1, MAX_EVENTS + 1):
            channel.on_event(v, text_frame(event(v)))
            sent = v
            if stalled_conn.closed and backlog_at_close is None:
                backlog_at_close = stalled_proto.buffered()
                break
            # The reading member keeps up; the event loop writes what the kernel takes.
            while received < v * frame_bytes:
                chunk = await asyncio.wait_for(reader.read(1 << 20), 5)
                assert chunk, "the reading member's socket closed"
                received += len(chunk)
        later = sent + 1
        channel.on_event(later, text_frame(event(later)))
        while received < later * frame_bytes:
            chunk = await asyncio.wait_for(reader.read(1 << 20), 5)
            assert chunk
            received += len(chunk)
        result = {
            "closed": stalled_conn.closed,
            "closes": list(stalled_proto.closes),
            "counted": slow_consumer_closes() - closes_before,
            "backlog_at_close": backlog_at_close,
            "frame_bytes": frame_bytes,
            "events": sent,
            "reader_bytes": received,
            "reader_frames": later,
            "reader_open": not reading_conn.closed,
        }
        for proto in protocols:
            if proto._close_timer is not None:
                proto._close_timer.cancel()
            proto.abort()
        return result
    finally:
        stalled.close()
        if reader is not None:
            _writer.close()  # type: ignore[union-attr]
        server.close()
        await server.wait_closed()


RUNNERS: dict[str, Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]]] = {
    "uvloop": uvloop.run,
    "asyncio": asyncio.run,
}


def run_in_thread(loop_kind: str) -> dict[str, Any]:
    """The scenario on a loop of its own, in a thread of its own: the test session's loop
    (pytest-asyncio) stays as it is."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(RUNNERS[loop_kind], scenario()).result(timeout=60)


@pytest.mark.parametrize("loop_kind", sorted(RUNNERS))
def test_a_client_that_stops_reading_is_dropped_and_its_room_goes_on(loop_kind: str) -> None:
    result = run_in_thread(loop_kind)
    assert result["closed"], f"not dropped after {result['events']} events of 8 KB"
    assert result["closes"] == [(CloseCode.SLOW_CONSUMER, "send buffer full")]
    assert result["counted"] == 1
    # The transport calls back once past the bound: it holds one event more at most (and the
    # close frame goes after it).
    assert BOUND < result["backlog_at_close"] <= BOUND + result["frame_bytes"]
    # The member that reads got every event, the one after the drop too, byte for byte.
    assert result["reader_open"]
    assert result["reader_bytes"] == result["reader_frames"] * result["frame_bytes"]
