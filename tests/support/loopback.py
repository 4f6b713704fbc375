"""Loopback pieces for the tests that drive the gateway's socket protocol on a real event loop
(tests/integration/test_socket_bound.py, test_direct_fanout_sockets.py)."""

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P", bound=asyncio.Protocol)


@dataclass
class Accepted(Generic[P]):
    """A server on 127.0.0.1 whose accepted sockets each get a protocol from `make`; `all_in`
    is set once `count` of them were accepted."""

    server: asyncio.Server
    port: int
    protocols: list[P] = field(default_factory=list)
    all_in: asyncio.Event = field(default_factory=asyncio.Event)


async def serve(make: Callable[[], P], count: int) -> Accepted[P]:
    loop = asyncio.get_running_loop()
    accepted: Accepted[P]

    def factory() -> P:
        proto = make()
        accepted.protocols.append(proto)
        if len(accepted.protocols) == count:
            accepted.all_in.set()
        return proto

    server = await loop.create_server(factory, "127.0.0.1", 0)
    accepted = Accepted(server, server.sockets[0].getsockname()[1])
    return accepted


def slow_reader() -> socket.socket:
    """A non-blocking client socket with a 4 KB receive buffer: unless read, it falls behind
    at once (connect it with loop.sock_connect)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    return sock
