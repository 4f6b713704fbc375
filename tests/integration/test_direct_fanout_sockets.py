"""Room events written straight to real loopback sockets' descriptors, on uvloop (as the
gateway runs) and asyncio: a member that falls far behind, so that the kernel takes only
parts of frames and the transport queues the rest, still gets every event whole and in
order once it reads again; and a socket's duplicate descriptor goes with the socket."""

import asyncio
import concurrent.futures
import os
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any

import pytest
import uvloop

from services.common.contracts.models import UserRef
from services.gateway.connection import Connection
from services.gateway.hub import RoomChannel
from services.gateway.wire import text_frame
from services.gateway.wsserver import DESCRIPTORS, ClientSocket, DescriptorBudget
from tests.support.loopback import serve, slow_reader

pytestmark = pytest.mark.integration

ROOM = "AbC123"
EVENTS = 400
EVENT_BYTES = 8 * 1024  # 3.2 MB in all: far past what the kernel buffers for a non-reader


def event(v: int) -> bytes:
    body = b'{"type":"chat","room":"%s","v":%d,"data":"' % (ROOM.encode(), v)
    return body + b"x" * (EVENT_BYTES - len(body) - 2) + b'"}'


def frames(data: bytes) -> list[bytes]:
    """A server's unmasked WebSocket frames, split back into their payloads."""
    out, at = [], 0
    while at < len(data):
        assert data[at] == 0x81, f"not a text frame at byte {at}"
        size, at = data[at + 1], at + 2
        if size == 126:
            size, at = int.from_bytes(data[at : at + 2], "big"), at + 2
        elif size == 127:
            size, at = int.from_bytes(data[at : at + 8], "big"), at + 8
        out.append(data[at : at + size])
        at += size
    return out


async def read_exactly(reader: asyncio.StreamReader, size: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(size), 10)


async def scenario() -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    accepted = await serve(lambda: ClientSocket(None, SimpleNamespace(connections=set())), 1)
    server = accepted.server
    raw = slow_reader()  # falls behind at once
    await loop.sock_connect(raw, ("127.0.0.1", accepted.port))
    reader, writer = await asyncio.open_connection(sock=raw)
    try:
        await asyncio.wait_for(accepted.all_in.wait(), 5)
        (proto,) = accepted.protocols
        conn = Connection(proto, UserRef(id="u", name="u"), "gw:1", 64 << 20)
        channel = RoomChannel(ROOM, 0.05)
        channel.add_member(conn)
        channel.settle(0)
        dup = conn.fd
        held_with_dup = DESCRIPTORS.held
        went_direct_first = conn.direct
        for v in range(1, EVENTS + 1):
            channel.on_event(v, text_frame(event(v)))
        queued_at_end = proto.buffered()
        fell_back = conn.queued
        size = sum(len(text_frame(event(v))) for v in range(1, EVENTS + 1))
        got = await read_exactly(reader, size)
        # Caught up: the transport has written its queue; events go straight again.
        for _ in range(100):
            if proto.buffered() == 0:
                break
            await asyncio.sleep(0.01)
        later = [text_frame(event(v)) for v in range(EVENTS + 1, EVENTS + 4)]
        for v, frame in enumerate(later, EVENTS + 1):
            channel.on_event(v, frame)
        got += await read_exactly(reader, sum(map(len, later)))
        direct_again = conn.direct
        proto.conn = None  # no gateway behind this protocol to tell of the close
        conn.stop_direct()
        proto.abort()
        await asyncio.sleep(0.05)  # connection_lost runs
        try:
            os.fstat(dup)
            dup_closed = False
        except OSError:
            dup_closed = True
        return {
            "payloads": frames(got),
            "went_direct_first": went_direct_first,
            "queued_at_end": queued_at_end,
            "fell_back": fell_back,
            "direct_again": direct_again,
            "dup": dup,
            "dup_closed": dup_closed,
            "held_with_dup": held_with_dup,
            "held_after": DESCRIPTORS.held,
        }
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


RUNNERS: dict[str, Callable[[Coroutine[Any, Any, dict[str, Any]]], dict[str, Any]]] = {
    "uvloop": uvloop.run,
    "asyncio": asyncio.run,
}


@pytest.mark.parametrize("loop_kind", sorted(RUNNERS))
def test_a_member_that_falls_behind_gets_every_event_whole_and_in_order(loop_kind: str) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        result = pool.submit(RUNNERS[loop_kind], scenario()).result(timeout=60)
    assert result["dup"] >= 0 and result["went_direct_first"]
    # The kernel stopped taking frames: the rest waited in the transport...
    assert result["fell_back"] and result["queued_at_end"] > 0
    # ...and every event arrived once, whole, in order, across both ways of sending.
    assert result["payloads"] == [event(v) for v in range(1, EVENTS + 4)]
    assert result["direct_again"]
    assert result["dup_closed"]
    assert result["held_after"] == result["held_with_dup"] - 1  # its budget given back


def test_duplicates_leave_half_the_open_file_limit_to_new_sockets() -> None:
    budget = DescriptorBudget()
    budget.limit = 2
    assert [budget.take() for _ in range(3)] == [True, True, False]
    budget.give_back()
    assert budget.take()
