import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest

from services.common.devstack import free_port
from tests.support.client import WsClient, guest
from tests.support.system import System

Connect = Callable[..., Awaitable[WsClient]]
_names = itertools.count(1)


@pytest.fixture
async def connect(system: System) -> AsyncIterator[Connect]:
    """Sign in a fresh guest and open a socket; every socket is closed after the test."""
    clients: list[WsClient] = []

    async def _connect(name: str | None = None) -> WsClient:
        name = name or f"user{next(_names)}"
        token, user = guest(system.base_url, name)
        client = await WsClient.connect(system.ws_url, token, name)
        client.user = user  # type: ignore[attr-defined]
        client.token = token  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        await client.close()


async def new_room(owner: WsClient, **settings: object) -> str:
    created = await owner.call("room.create", dict(settings))
    return created["room"]["code"]


@dataclass(frozen=True)
class StrictGateway:
    """A second gateway in the main system with production-like limits and fast heartbeats
    (the main one is lenient so other tests may hammer it)."""

    port: int
    gateway_id: str

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


STRICT_ENV = {
    "HEARTBEAT_INTERVAL_SECONDS": "1",
    "PONG_TIMEOUT_SECONDS": "3",
    "CONN_RATE_PER_SECOND": "5",
    "CONN_RATE_BURST": "10",
    "USER_RATE_PER_SECOND": "5",
    "USER_RATE_BURST": "15",
    "ALLOWED_ORIGINS": "https://portal.example",
}


@pytest.fixture(scope="session")
def strict_gateway(system: System) -> StrictGateway:
    port = free_port()
    gateway_id = f"strict-{port}"
    process = system.start_service(
        "gateway", {**STRICT_ENV, "PORT": str(port), "GATEWAY_ID": gateway_id}
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return StrictGateway(port, gateway_id)
        except httpx.HTTPError:
            pass
        if process.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"strict gateway did not start:\n{process.log()}")
        time.sleep(0.1)
