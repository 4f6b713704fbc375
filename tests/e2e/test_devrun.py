"""`make run` (scripts/devrun.py): one command brings everything up, Ctrl-C takes it all
down, and a second run finds the rooms of the first."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from services.common.devstack import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _start(run_dir: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "scripts/devrun.py", "--run-dir", str(run_dir)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # like a terminal: Ctrl-C goes to devrun alone
        )


def _create_room(base: str) -> str:
    deadline = time.monotonic() + 120  # cold start: initdb, migrations, five processes
    while True:
        try:
            token = httpx.post(f"{base}/auth/guest", json={"name": "Ann"}, timeout=2).json()
            with connect(f"{base.replace('http', 'ws')}/ws?token={token['token']}") as ws:
                ws.send('{"id": "c1", "type": "room.create", "data": {"name": "kept"}}')
                reply = ws.recv(timeout=5)
                if '"ok":true' in reply:
                    return token["token"], reply
        except (httpx.HTTPError, OSError, KeyError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("devrun never answered")
        time.sleep(0.3)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=60)


@pytest.fixture
def run_root() -> Iterator[Path]:
    # Not pytest's tmp_path: PostgreSQL runs as another user (we are root), and pytest keeps
    # its base folder at mode 0700, re-tightened by any other pytest session on the machine.
    root = Path(tempfile.mkdtemp(prefix="sharetube-devrun-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_second_run_finds_the_rooms_of_the_first(run_root: Path) -> None:
    tmp_path = run_root
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("NATS_URL", "DATABASE_URL", "REDIS_URL")
        },
        "PORT": str(free_port()),
        "SHARETUBE_NATS_PORT": str(free_port()),
        "SHARETUBE_POSTGRES_PORT": str(free_port()),
        "SHARETUBE_REDIS_PORT": str(free_port()),
    }
    base = f"http://127.0.0.1:{env['PORT']}"
    log = tmp_path / "devrun.log"
    first = _start(tmp_path / "run", env, log)
    try:
        token, reply = _create_room(base)
    finally:
        assert _stop(first) == 0, log.read_text()[-3000:]
    code = reply.split('"code":"')[1].split('"')[0]
    # Everything it started is gone: the ports are free again.
    for port in ("PORT", "SHARETUBE_NATS_PORT", "SHARETUBE_POSTGRES_PORT", "SHARETUBE_REDIS_PORT"):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{env[port]}/", timeout=1)

    second = _start(tmp_path / "run", env, log)
    try:
        _create_room(base)  # up again
        with connect(f"ws://127.0.0.1:{env['PORT']}/ws?token={token}") as ws:
            ws.send(f'{{"id": "j1", "type": "join", "room": "{code}", "data": {{}}}}')
            joined = ws.recv(timeout=10)
        assert '"ok":true' in joined and '"name":"kept"' in joined
    finally:
        assert _stop(second) == 0, log.read_text()[-3000:]
