"""Start ShareTube's services as separate processes against given NATS / DB / Redis URLs."""

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from websockets.sync.client import connect

from services.common.devstack import LocalStack, free_port

ROOT = Path(__file__).resolve().parents[2]


def migrate(database_url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        check=True,
        capture_output=True,
        timeout=120,
    )


@contextlib.contextmanager
def migrated_servers(root: Path, *, durable: bool = False) -> Iterator[LocalStack]:
    """NATS, PostgreSQL and Redis of their own, on free ports with their data under `root`,
    the database migrated (`.env` holds their URLs); stopped however the block ends.
    `durable`: PostgreSQL flushes its WAL at every commit, as in production."""
    ports = {var: free_port() for var in ("NATS_URL", "DATABASE_URL", "REDIS_URL")}
    # env={}: never the URLs of the caller's environment, always servers started here.
    with LocalStack(root, env={}, ports=ports, fast=not durable, persistent=False) as servers:
        migrate(servers.env["DATABASE_URL"])
        yield servers


@dataclass
class ServiceProcess:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@dataclass
class System:
    env: dict[str, str]
    log_dir: Path
    port: int = 0
    processes: list[ServiceProcess] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start_service(self, name: str, extra_env: dict[str, str] | None = None) -> ServiceProcess:
        n = sum(1 for p in self.processes if p.name.startswith(name))
        label = f"{name}-{n}"
        log_path = self.log_dir / f"{label}.log"
        with log_path.open("wb") as log_file:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                cwd=ROOT,
                env={**self.env, **(extra_env or {})},
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        service = ServiceProcess(label, proc, log_path)
        self.processes.append(service)
        return service

    def start(self, replicas: dict[str, int]) -> "System":
        self.port = self.port or free_port()
        for name, count in replicas.items():
            for _ in range(count):
                extra = {"PORT": str(self.port)} if name == "gateway" else None
                self.start_service(name, extra)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            for p in self.processes:
                if p.proc.poll() is not None:
                    raise RuntimeError(f"{p.name} exited:\n{p.log()}")
            try:
                if self._probe():
                    return
            except (httpx.HTTPError, OSError, KeyError) as exc:
                last_error = repr(exc)
            time.sleep(0.2)
        raise RuntimeError(f"system not ready: {last_error}")

    def _probe(self) -> bool:
        """gateway -> auth, rooms and queue all answer: sign in, create a room, load its queue."""
        reply = httpx.post(f"{self.base_url}/auth/guest", json={"name": "probe"}, timeout=2)
        if reply.status_code != 200:
            return False
        token = reply.json()["token"]
        with connect(f"{self.ws_url}?token={token}", open_timeout=2) as ws:
            ws.send(json.dumps({"id": "p1", "type": "room.create", "data": {}}))
            created = json.loads(ws.recv(timeout=5))
            if not created.get("ok"):
                return False
            code = created["data"]["room"]["code"]
            ws.send(json.dumps({"id": "p2", "type": "join", "room": code, "data": {}}))
            return bool(json.loads(ws.recv(timeout=5)).get("ok"))

    def stop(self) -> None:
        for p in reversed(self.processes):
            p.stop()
