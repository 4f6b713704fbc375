"""The smallest setup: SQLite through DATABASE_URL, one replica of each service."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.common import devstack
from tests.conftest import make_system
from tests.support.client import WsClient, guest
from tests.support.system import System, migrate

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sqlite_system(infra: dict[str, str], workdir: Path) -> Iterator[System]:
    url = f"sqlite+aiosqlite:///{workdir / 'sharetube.db'}"
    migrate(url)
    # Its own bus: on the shared one, the PostgreSQL system's replicas would answer too.
    nats, nats_url = devstack.start_nats(workdir / "nats-sqlite")
    env = {**infra, "DATABASE_URL": url, "NATS_URL": nats_url}
    system = make_system(env, workdir, "sqlite")
    try:
        yield system.start({"auth": 1, "rooms": 1, "queue": 1, "chat": 1, "gateway": 1})
    finally:
        system.stop()
        nats.stop()


async def test_a_room_plays_on_sqlite(sqlite_system: System) -> None:
    token, _user = guest(sqlite_system.base_url, "Sam")
    client = await WsClient.connect(sqlite_system.ws_url, token)
    try:
        room = (await client.call("room.create", {}))["room"]["code"]
        snapshot = await client.call("join", room=room)
        assert snapshot["playback"]["status"] == "idle"
        await client.call("queue.add", {"url": "https://youtu.be/dQw4w9WgXcQ"}, room=room)
        await client.call("play", room=room)
        playing = await client.wait_playback("playing")
        assert playing["video_id"] == "dQw4w9WgXcQ"
        await client.call("pause", room=room)
        await client.wait_playback("paused")
        fresh = await client.call("room.sync", room=room)
        assert fresh["playback"]["status"] == "paused" and fresh["queue"] == []
    finally:
        await client.close()
