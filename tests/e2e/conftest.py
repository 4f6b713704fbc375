import itertools
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

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
