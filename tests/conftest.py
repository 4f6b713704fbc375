"""Session fixtures: real NATS, PostgreSQL and Redis, started once on free ports."""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest.stack import keep_logs
from tests.support import kept_logs
from tests.support.system import System, migrated_servers


@pytest.fixture(scope="session")
def workdir(request: pytest.FixtureRequest) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sharetube-test-") as tmp:
        yield Path(tmp)
        # Torn down last: every stack on this folder has stopped and flushed its logs.
        if request.session.testsfailed:
            KEPT_LOGS.extend(keep_logs(Path(tmp), kept_logs.KEPT))


# The logs a failed run kept, for the terminal summary (pytest_terminal_summary below).
KEPT_LOGS: list[Path] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not KEPT_LOGS:
        return
    terminalreporter.section("logs of the failed run")
    terminalreporter.write_line(f"{len(KEPT_LOGS)} logs kept in {kept_logs.KEPT}; their errors:")
    for line in kept_logs.notable_lines(KEPT_LOGS):
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def infra(workdir: Path) -> Iterator[dict[str, str]]:
    """NATS, PostgreSQL and Redis for the whole session, migrated."""
    with migrated_servers(workdir) as servers:
        yield dict(servers.env)


# Short timings so the tests wait little; the code paths are the same as in production.
TEST_ENV = {
    # /metrics, /healthz, /readyz on a free port per process, logged (tests/e2e/
    # test_observability.py reads it); loopback only.
    "METRICS_PORT": "0",
    "METRICS_HOST": "127.0.0.1",
    "PLAYBACK_START_TIMEOUT_MS": "1500",
    "PLAYBACK_START_BUFFER_MS": "200",
    "DEADLINE_SWEEP_INTERVAL_S": "0.5",
    # Every e2e test runs with the gateway's sequence sweep on: a sweep that resynced a room
    # whose events had all gone out would show in the events the tests compare.
    "SEQUENCE_SWEEP_SECONDS": "1",
    "AD_MAX_WAIT_MS": "4000",  # a stuck ad releases the room in seconds, not 90
    "LOG_LEVEL": "INFO",
    "JWT_SECRET": "test-secret-0123456789abcdef0123456789",
    # 20 messages per user per 10 minutes: the rate-limit test cannot depend on how fast a
    # loaded machine sends (tests/unit/chat checks the sliding window itself).
    "CHAT_RATE_LIMIT_MESSAGES": "20",
    "CHAT_RATE_LIMIT_WINDOW_S": "600",
    # Presence in seconds, not minutes: a member who drops shows away and is gone 3 s later;
    # a killed gateway is noticed 1.5 s after its last heartbeat plus 2 s of grace.
    "PRESENCE_HEARTBEAT_SECONDS": "0.5",
    "PRESENCE_SWEEP_INTERVAL_SECONDS": "0.5",
    "PRESENCE_AWAY_TIMEOUT_SECONDS": "3",
    "GATEWAY_DEAD_AFTER_SECONDS": "2",
    "BACKGROUND_TASK_LEASE_SECONDS": "3",
    # Tests drive sockets far faster than people do; the limits themselves are tested on a
    # gateway of their own (tests/e2e/test_abuse.py).
    "CONN_RATE_PER_SECOND": "5000",
    "CONN_RATE_BURST": "10000",
    "USER_RATE_PER_SECOND": "5000",
    "USER_RATE_BURST": "10000",
}


def make_system(infra: dict[str, str], workdir: Path, name: str) -> System:
    log_dir = workdir / f"logs-{name}"
    log_dir.mkdir(exist_ok=True)
    env = {**os.environ, **infra, **TEST_ENV}
    return System(env=env, log_dir=log_dir)


@pytest.fixture(scope="session")
def system(infra: dict[str, str], workdir: Path) -> Iterator[System]:
    """The whole system as separate processes: two replicas of rooms and queue."""
    sys_ = make_system(infra, workdir, "main")
    try:
        sys_.start({"auth": 1, "rooms": 2, "queue": 2, "chat": 2, "gateway": 1, "janitor": 1})
        yield sys_
    finally:
        sys_.stop()
