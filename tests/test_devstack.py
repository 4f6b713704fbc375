"""The embedded servers `make run` and the tests rely on, started for real (no mocks)."""

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nats
import psycopg
import pytest
import redis

from services.common import devstack
from services.common.devstack import LocalStack, ManagedProcess

pytestmark = pytest.mark.timeout(60)


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[tuple[ManagedProcess, str]]:
    proc, url = devstack.start_nats(tmp_path / "nats")
    yield proc, url
    proc.stop()


async def test_nats_starts_with_jetstream(nats_server: tuple[ManagedProcess, str]) -> None:
    proc, url = nats_server
    assert url.startswith("nats://127.0.0.1:")
    assert devstack.server_answers(url)
    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        info = await nc.jetstream().account_info()
    finally:
        await nc.close()
    assert info.limits is not None
    assert (proc.log_path.parent / "jetstream").is_dir()


def test_postgres_answers_and_keeps_data_over_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    proc, url = devstack.start_postgres(data, fast=True)
    try:
        assert url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
        assert url.endswith("/sharetube")
        with psycopg.connect(_psycopg_url(url), autocommit=True) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            conn.execute("create table kept (v text)")
            conn.execute("insert into kept values ('still here')")
    finally:
        proc.stop()
    assert not proc.alive
    assert proc.returncode == 0  # fast shutdown, not a kill

    proc, url = devstack.start_postgres(data, fast=True)
    try:
        with psycopg.connect(_psycopg_url(url)) as conn:
            assert conn.execute("select v from kept").fetchall() == [("still here",)]
    finally:
        proc.stop()


def test_postgres_logs_long_lock_waits_and_slow_statements(tmp_path: Path) -> None:
    proc, url = devstack.start_postgres(tmp_path / "pg", fast=True)
    try:
        with (
            psycopg.connect(_psycopg_url(url)) as holder,
            psycopg.connect(_psycopg_url(url), autocommit=True) as waiter,
            psycopg.connect(_psycopg_url(url), autocommit=True) as watcher,
        ):
            holder.execute("create table locked (v int)")
            holder.commit()
            holder.execute("lock table locked in access exclusive mode")
            with ThreadPoolExecutor(1) as pool:
                waited = pool.submit(lambda: waiter.execute("select count(*) from locked"))
                for _ in range(200):  # until the waiter waits (a busy machine starts it late)
                    row = watcher.execute("select count(*) from pg_locks where not granted")
                    if row.fetchone() != (0,):
                        break
                    time.sleep(0.05)
                else:
                    raise AssertionError("the second connection never waited for the lock")
                holder.execute("select pg_sleep(1.3)")  # slow, and the waiter waits past 1 s
                holder.commit()
                assert waited.result(timeout=30).fetchone() == (0,)
    finally:
        proc.stop()
    log = proc.log_path.read_text()
    assert "still waiting for AccessShareLock" in log
    assert re.search(r"duration: 1\d{3}\.\d+ ms  statement: select pg_sleep\(1\.3\)", log)


def test_postgres_starts_over_a_killed_run(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    proc, _ = devstack.start_postgres(data, fast=True)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole server, as a reboot or OOM kill would
    proc.stop()
    pid_file = data / "pgdata" / "postmaster.pid"
    assert pid_file.exists()
    # After a reboot the pid in the stale file can belong to another live process, which
    # PostgreSQL alone would take for a running server.
    squatter = subprocess.Popen(["sleep", "30"], **_same_user_as_postgres())
    try:
        lines = pid_file.read_text().split("\n")
        pid_file.write_text("\n".join([str(squatter.pid), *lines[1:]]))
        proc, url = devstack.start_postgres(data, fast=True)
        try:
            with psycopg.connect(_psycopg_url(url)) as conn:
                assert conn.execute("select 1").fetchone() == (1,)
        finally:
            proc.stop()
    finally:
        squatter.kill()
        squatter.wait()


def _same_user_as_postgres() -> dict[str, object]:
    run_as = devstack._pg_run_as()
    return run_as.popen_kwargs() if run_as else {}


def test_postgres_refuses_a_data_dir_in_use(tmp_path: Path) -> None:
    proc, _ = devstack.start_postgres(tmp_path / "pg", fast=True)
    try:
        with pytest.raises(devstack.ServerStartError, match="already running"):
            devstack.start_postgres(tmp_path / "pg", fast=True)
    finally:
        proc.stop()


def test_redis_set_get(tmp_path: Path) -> None:
    proc, url = devstack.start_redis(tmp_path / "redis")
    try:
        client = redis.Redis.from_url(url, socket_timeout=2)
        try:
            client.set("greeting", "hello")
            assert client.get("greeting") == b"hello"
            assert client.config_get("appendonly") == {"appendonly": "yes"}
        finally:
            client.close()
    finally:
        proc.stop()
    assert proc.returncode == 0


def test_start_fails_clearly_when_the_port_is_taken(
    tmp_path: Path, nats_server: tuple[ManagedProcess, str]
) -> None:
    _, url = nats_server
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(devstack.ServerStartError, match="exited with code"):
        devstack.start_redis(tmp_path / "redis", port, persistent=False)


def test_server_answers_is_false_for_a_closed_port() -> None:
    port = devstack.free_port()
    assert not devstack.server_answers(f"nats://127.0.0.1:{port}")
    assert not devstack.server_answers(f"redis://127.0.0.1:{port}/0")
    assert not devstack.server_answers(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")
    assert not devstack.server_answers("sqlite+aiosqlite:///./sharetube.db")


def test_local_stack_uses_urls_from_env_without_starting_anything(tmp_path: Path) -> None:
    given = {
        "NATS_URL": "nats://nats.example:4222",
        "DATABASE_URL": "sqlite+aiosqlite:///./sharetube.db",
        "REDIS_URL": "redis://redis.example:6379/0",
    }
    with LocalStack(tmp_path / "run", given) as stack:
        assert stack.env == given
        assert stack.started == []
    assert not (tmp_path / "run").exists()


def test_local_stack_reuses_an_answering_server_and_starts_the_rest(
    tmp_path: Path, nats_server: tuple[ManagedProcess, str]
) -> None:
    _, running_nats = nats_server
    nats_port = int(running_nats.rsplit(":", 1)[1])
    redis_port = devstack.free_port()
    given = {"DATABASE_URL": "sqlite+aiosqlite:///./sharetube.db"}
    stack = LocalStack(
        tmp_path / "run",
        given,
        ports={"NATS_URL": nats_port, "REDIS_URL": redis_port},
        persistent=False,
    )
    with stack:
        assert stack.env == {
            "NATS_URL": running_nats,
            "DATABASE_URL": given["DATABASE_URL"],
            "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        }
        [started] = stack.started
        assert started.name == "redis"
        assert devstack.server_answers(stack.env["REDIS_URL"])
    assert not started.alive
    assert devstack.server_answers(running_nats)  # not ours to stop
