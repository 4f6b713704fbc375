"""A system of its own for the fault tests: killing and restarting its parts cannot disturb
any other test. Two replicas of every service, two gateways on two ports (a client that
loses one reconnects to the other, as a load balancer would send it), two janitors.
"""

import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from services.common import devstack
from tests.conftest import TEST_ENV
from tests.support.system import ROOT, ServiceProcess, System, migrate

# Faster than the main system's: a lost gateway or leader is noticed within seconds.
FAULT_ENV = {
    **TEST_ENV,
    "BACKGROUND_TASK_LEASE_SECONDS": "2",
    "PRESENCE_HEARTBEAT_SECONDS": "0.5",
    "GATEWAY_DEAD_AFTER_SECONDS": "1.5",
    "PRESENCE_AWAY_TIMEOUT_SECONDS": "3",
    "MAINTENANCE_INTERVAL_SECONDS": "1",
    "ROOM_CLOSE_AFTER_EMPTY_SECONDS": "3",
    # The load must never be limited by anything but the faults.
    "CHAT_RATE_LIMIT_MESSAGES": "1000000",
    "CHAT_RATE_LIMIT_WINDOW_S": "1",
    "MAX_QUEUE_LENGTH": "100000",
}

REPORT_PATH = ROOT / ".bench" / "faults.json"


@dataclass
class Stack:
    """NATS, PostgreSQL and Redis on fixed ports, restartable on the same port and data."""

    root: Path
    ports: dict[str, int]
    procs: dict[str, devstack.ManagedProcess] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def start(self, kind: str) -> None:
        folder = self.root / kind
        if kind == "nats":
            proc, url = devstack.start_nats(folder, self.ports[kind])
            self.urls["NATS_URL"] = url
        elif kind == "postgres":
            proc, url = devstack.start_postgres(folder, self.ports[kind], fast=True)
            self.urls["DATABASE_URL"] = url
        else:
            # Persistent, as a production Redis is: revoked sessions outlive a restart.
            proc, url = devstack.start_redis(folder, self.ports[kind], persistent=True)
            self.urls["REDIS_URL"] = url
        self.procs[kind] = proc

    def stop(self, kind: str) -> None:
        self.procs[kind].stop()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="sharetube-faults-") as tmp:
        ports = {k: devstack.free_port() for k in ("nats", "postgres", "redis")}
        stack = Stack(Path(tmp), ports)
        try:
            for kind in ("nats", "postgres", "redis"):
                stack.start(kind)
            migrate(stack.urls["DATABASE_URL"])
            yield stack
        finally:
            for proc in reversed(list(stack.procs.values())):
                proc.stop()


@dataclass
class FaultSystem:
    system: System
    stack: Stack
    gateway_ports: list[int]
    # name -> the extra env it was started with, to start it again the same way
    started_with: dict[str, dict[str, str]] = field(default_factory=dict)
    # Processes a test killed or stopped on purpose; every other one must stay up.
    retired: set[str] = field(default_factory=set)

    @property
    def ws_urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{p}/ws" for p in self.gateway_ports]

    @property
    def base_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.gateway_ports]

    def start(self, name: str, extra: dict[str, str]) -> ServiceProcess:
        service = self.system.start_service(name, extra)
        self.started_with[service.name] = extra
        return service

    def alive(self, prefix: str) -> list[ServiceProcess]:
        return [
            p for p in self.system.processes if p.name.startswith(prefix) and p.proc.poll() is None
        ]

    def retire(self, service: ServiceProcess) -> None:
        self.retired.add(service.name)

    def unexpectedly_dead(self) -> list[str]:
        return [
            p.name
            for p in self.system.processes
            if p.name not in self.retired and p.proc.poll() is not None
        ]

    def replace(self, dead: ServiceProcess, **extra_env: str) -> ServiceProcess:
        """Bring a killed replica back, as its Deployment would (a gateway or janitor with a
        new id: a process's sessions and lease are its own)."""
        env = {**self.started_with[dead.name], **extra_env}
        return self.start(dead.name.rsplit("-", 1)[0], env)


@pytest.fixture(scope="module")
def faults(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultSystem]:
    log_dir = tmp_path_factory.mktemp("fault-logs")
    env = {**os.environ, **stack.urls, **FAULT_ENV}
    ports = [devstack.free_port(), devstack.free_port()]
    system = System(env=env, log_dir=log_dir, port=ports[0])
    fs = FaultSystem(system, stack, ports)
    try:
        for name in ("auth", "rooms", "queue", "chat"):
            for _ in range(2):
                fs.start(name, {})
        for n, port in enumerate(ports):
            fs.start("gateway", {"PORT": str(port), "GATEWAY_ID": f"gw{n}"})
        for n in range(2):
            fs.start("janitor", {"JANITOR_INSTANCE_ID": f"janitor{n}"})
        system.wait_ready(timeout=60)
        yield fs
    finally:
        system.stop()


# What this run measured, for the terminal summary (pytest_terminal_summary below).
RESULTS: dict[str, Any] = {}


@pytest.fixture(scope="module")
def report() -> Iterator[dict[str, Any]]:
    """Measured recovery per fault, written to .bench/faults.json and printed at the end."""
    yield RESULTS
    REPORT_PATH.parent.mkdir(exist_ok=True)
    body = {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "faults": RESULTS}
    REPORT_PATH.write_text(json.dumps(body, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("fault recovery")
    terminalreporter.write_line(f"(also in {REPORT_PATH.relative_to(ROOT)})")
    for name, figures in RESULTS.items():
        line = "  ".join(f"{k}={v}" for k, v in figures.items())
        terminalreporter.write_line(f"{name:<24} {line}")
