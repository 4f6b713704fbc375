"""Faults with the real processes, one after another, while clients keep sending.

Each test: three clients in a fresh room send a steady stream of commands (queue.add and
chat.send, each with a unique marker) through two gateways; a fault is injected (kill -9 of a
replica, SIGTERM of a gateway, a restart of NATS, PostgreSQL or Redis); the clients retry
what got no answer with the same request id. Afterwards:

- every acknowledged command is there, exactly once (the markers in the queue and the chat);
- every client's state, built from its snapshot and the events since, equals a fresh snapshot;
- nothing but `unavailable` / `timeout` (retryable) was ever answered.

Recovery times are measured, never asserted: they go to .bench/faults.json and the terminal.
"""

import asyncio
import itertools
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import websockets

from services.janitor.lease import LEASE_KEY
from tests.support.client import PARTS, ReplyError, guest
from tests.support.resilient import ResilientClient

from .conftest import FaultSystem

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

VIDEO = "dQw4w9WgXcQ"
CLIENTS = 3
STEADY_S = 1.0  # load before the fault, and after the recovery
SNAPSHOT_CHAT = 50  # a snapshot carries the last 50 messages


class Load:
    """Each client sends, one command at a time, until stopped; markers of what was acked."""

    def __init__(self, clients: list[ResilientClient], room: str) -> None:
        self.clients = clients
        self.room = room
        self.acked: dict[str, str] = {}  # marker -> "queue" | "chat"
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.started = time.monotonic()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(c)) for c in self.clients]

    async def _run(self, client: ResilientClient) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            marker = f"{client.name}-{n}"
            try:
                if n % 2:
                    data = {"video_id": VIDEO, "title": marker}
                    await client.command("queue.add", data, self.room, deadline_s=90)
                    self.acked[marker] = "queue"
                else:
                    await client.command("chat.send", {"text": marker}, self.room, deadline_s=90)
                    self.acked[marker] = "chat"
            except (ReplyError, TimeoutError) as exc:
                self.failures.append(f"{marker}: {exc!r}")
            await asyncio.sleep(0.03)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def recovered_after(self, t: float, timeout: float = 90) -> float:
        """Seconds from `t` until every client had a command issued after `t` acknowledged."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            firsts = [
                min((a.finished for a in c.acked if a.started >= t), default=None)
                for c in self.clients
            ]
            if all(f is not None for f in firsts):
                return round(max(firsts) - t, 3)  # type: ignore[type-var]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no recovery within {timeout} s; failures: {self.failures[:5]}")

    def figures(self, since: float) -> dict[str, Any]:
        window = [a for c in self.clients for a in c.acked if a.finished >= since]
        stalls = []
        for c in self.clients:
            done = sorted(a.finished for a in c.acked if a.finished >= since)
            stalls += [b - a for a, b in itertools.pairwise(done)]
        return {
            "acked_commands": len(self.acked),
            "retried_commands": sum(1 for a in window if a.tries > 1),
            "max_command_s": round(max((a.finished - a.started for a in window), default=0), 3),
            "max_stall_s": round(max(stalls, default=0), 3),
        }


async def _history(client: ResilientClient, room: str) -> list[str]:
    texts: list[str] = []
    before = None
    while True:
        page = await client.command("chat.history", {"limit": 100, "before_id": before}, room)
        texts += [m["text"] for m in page["messages"]]
        if not page["has_more"]:
            return texts
        before = page["messages"][-1]["id"]


async def verify(load: Load) -> dict[str, Any]:
    """Everything acknowledged is there once; every client is in sync with a fresh snapshot."""
    assert not load.failures, load.failures[:10]
    first = load.clients[0]
    titles = [e["title"] for e in (await first.command("queue.load", {}, load.room))["queue"]]
    texts = await _history(first, load.room)
    lost = [m for m, kind in load.acked.items() if m not in (titles if kind == "queue" else texts)]
    duplicates = sorted({m for m in titles + texts if (titles + texts).count(m) > 1})
    assert not lost, f"acknowledged but lost: {lost}"
    assert not duplicates, f"applied twice: {duplicates}"
    # In sync: each client's reducer state equals a fresh snapshot (the janitor may still be
    # settling presence, so compare until it holds).
    deadline = time.monotonic() + 30
    while True:
        fresh = await first.command("room.sync", {}, load.room)
        behind = [c.name for c in load.clients if not _same(c.parts(load.room), fresh)]
        if not behind:
            break
        assert time.monotonic() < deadline, f"out of sync: {behind}"
        await asyncio.sleep(0.3)
    return {"lost": len(lost), "duplicates": len(duplicates)}


def _same(parts: dict[str, Any], snapshot: dict[str, Any]) -> bool:
    for part in PARTS:
        mine, theirs = parts[part], snapshot[part]
        if part == "chat":
            mine = mine[-SNAPSHOT_CHAT:]
        if mine != theirs:
            return False
    return True


@pytest_asyncio.fixture(scope="module")
async def crowd(faults: FaultSystem) -> AsyncIterator[list[ResilientClient]]:
    clients = []
    for n in range(CLIENTS):
        token, _user = guest(faults.base_urls[0], f"c{n}")
        # Spread over the gateways, as a load balancer would.
        urls = faults.ws_urls[n % 2 :] + faults.ws_urls[: n % 2]
        clients.append(await ResilientClient(urls, token, f"c{n}").start())
    yield clients
    for client in clients:
        await client.stop()


Fault = Callable[[], Awaitable[float | None]]


async def run_fault(
    name: str,
    crowd: list[ResilientClient],
    report: dict[str, Any],
    inject: Fault,
    lift: Fault | None = None,
    extra: dict[str, Any] | None = None,
) -> Load:
    """Load, fault, recovery, verification; the figures go to the report."""
    room = (await crowd[0].command("room.create", {"control_mode": "any"}))["room"]["code"]
    for client in crowd:
        await client.join(room)
    reconnects, resyncs = sum(c.reconnects for c in crowd), sum(c.resyncs for c in crowd)
    load = Load(crowd, room)
    load.start()
    await asyncio.sleep(STEADY_S)
    t_fault = time.monotonic()
    await inject()
    t_back = time.monotonic()
    if lift is not None:
        await lift()
        t_back = time.monotonic()
    recovery_s = await load.recovered_after(t_back)
    await asyncio.sleep(STEADY_S)
    await load.stop()
    figures = load.figures(t_fault - STEADY_S)
    outcome = await verify(load)
    report[name] = {
        "downtime_s": round(t_back - t_fault, 3),
        "recovery_s": recovery_s,
        **figures,
        **outcome,
        "reconnects": sum(c.reconnects for c in crowd) - reconnects,
        "resyncs": sum(c.resyncs for c in crowd) - resyncs,
        **(extra or {}),
    }
    for client in crowd:  # the room empties, and the janitor closes it a little later
        await client.command("leave", {}, room)
        client.rooms.pop(room, None)
    return load


class Kill:
    """kill -9 of one replica; afterwards the orchestrator brings a new one up."""

    def __init__(self, faults: FaultSystem, service: str) -> None:
        self.faults = faults
        self.service = service
        self.victim: Any = None

    async def __call__(self) -> None:
        self.victim = self.faults.alive(self.service)[0]
        self.faults.retire(self.victim)
        self.victim.kill()  # SIGKILL: no drain, no goodbye

    async def replace(self, **extra_env: str) -> None:
        self.faults.replace(self.victim, **extra_env)
        await asyncio.sleep(1.5)  # its imports and connections, before the next fault


@pytest.mark.parametrize("service", ["rooms", "queue", "chat"])
async def test_kill_a_service_replica(
    service: str, faults: FaultSystem, crowd: list[ResilientClient], report: dict[str, Any]
) -> None:
    kill = Kill(faults, service)
    await run_fault(f"kill -9 {service}", crowd, report, kill)
    await kill.replace()


async def test_kill_an_auth_replica(
    faults: FaultSystem, crowd: list[ResilientClient], report: dict[str, Any]
) -> None:
    """Sign-ins go on through the other replica; every token handed out works."""
    tokens: list[str] = []
    stop = asyncio.Event()

    async def sign_ins() -> None:
        async with httpx.AsyncClient(base_url=faults.base_urls[1], timeout=10) as http:
            while not stop.is_set():
                try:
                    reply = await http.post("/auth/guest", json={"name": "probe"})
                except httpx.HTTPError:
                    reply = None
                if reply is not None and reply.status_code == 200:
                    tokens.append(reply.json()["token"])
                elif reply is not None:
                    assert reply.status_code in (503, 504), reply.text
                await asyncio.sleep(0.05)

    prober = asyncio.create_task(sign_ins())
    kill = Kill(faults, "auth")
    try:
        await run_fault("kill -9 auth", crowd, report, kill)
    finally:
        stop.set()
        await prober
    async with httpx.AsyncClient(base_url=faults.base_urls[0], timeout=10) as http:
        for token in tokens:
            me = await http.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200, me.text
    report["kill -9 auth"]["sign_ins"] = len(tokens)
    await kill.replace()


async def test_kill_a_gateway(
    faults: FaultSystem, crowd: list[ResilientClient], report: dict[str, Any]
) -> None:
    """Its clients reconnect to the other gateway; the janitor marks the dead gateway's
    sessions away and removes them; the members list ends up true again."""
    kill = Kill(faults, "gateway")
    await run_fault("kill -9 gateway", crowd, report, kill)
    await kill.replace(GATEWAY_ID=f"gw-r{time.monotonic_ns()}")


async def test_kill_the_janitor_leader(
    faults: FaultSystem, crowd: list[ResilientClient], report: dict[str, Any]
) -> None:
    """A standby takes the lease within about one lease (2 s here) of the leader's death."""
    redis = aioredis.from_url(faults.stack.urls["REDIS_URL"])
    took: dict[str, float] = {}
    victims: list[Any] = []

    async def inject() -> None:
        leader = (await redis.get(LEASE_KEY)).decode()
        victim = next(
            p
            for p in faults.alive("janitor")
            if faults.started_with[p.name].get("JANITOR_INSTANCE_ID") == leader
        )
        faults.retire(victim)
        victim.kill()
        victims.append(victim)
        t_kill = time.monotonic()
        while True:
            holder = await redis.get(LEASE_KEY)
            if holder is not None and holder.decode() != leader:
                took["takeover_s"] = round(time.monotonic() - t_kill, 3)
                took["new_leader"] = holder.decode()
                return
            assert time.monotonic() - t_kill < 60, "no janitor took over"
            await asyncio.sleep(0.02)

    try:
        await run_fault("kill -9 janitor leader", crowd, report, inject)
    finally:
        await redis.aclose()
    report["kill -9 janitor leader"].update(took, lease_s=2.0)
    for dead in victims:
        faults.replace(dead, JANITOR_INSTANCE_ID=f"janitor-r{time.monotonic_ns()}")


async def test_sigterm_drains_a_gateway(
    faults: FaultSystem, crowd: list[ResilientClient], report: dict[str, Any]
) -> None:
    """SIGTERM: every client gets a `reconnect` frame and a 1012 close, and reconnects."""
    hints_before = sum(len(c.hints) for c in crowd)
    stopped: list[Any] = []
    drained: dict[str, float] = {}

    async def inject() -> None:
        victim = faults.alive("gateway")[0]
        faults.retire(victim)
        started = time.monotonic()
        victim.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(victim.proc.wait, 30)
        drained["exit_after_sigterm_s"] = round(time.monotonic() - started, 3)
        stopped.append(victim)

    await run_fault("sigterm gateway", crowd, report, inject, extra=drained)
    victim = stopped[0]
    # uvicorn exits by re-raising the SIGTERM it deferred, after its graceful shutdown.
    assert victim.proc.returncode in (0, -signal.SIGTERM), victim.log()
    assert "drained" in victim.log_path.read_text(), victim.log()
    assert sum(len(c.hints) for c in crowd) > hints_before, "no reconnect frame reached a client"
    assert any(1012 in c.close_codes for c in crowd)
    faults.replace(victim, GATEWAY_ID=f"gw-r{time.monotonic_ns()}")
    await asyncio.sleep(1.5)


@pytest.mark.parametrize("kind", ["nats", "postgres", "redis"])
async def test_restart_a_backing_server(
    kind: str, faults: FaultSystem, crowd: list[ResilientClient], report: dict[str, Any]
) -> None:
    """Stopped for a moment and started again on the same port and data: every service
    reconnects by itself."""

    refusals: list[int | None] = []

    async def inject() -> None:
        await asyncio.to_thread(faults.stack.stop, kind)
        if kind == "redis":
            # Sign-ins cannot be checked: a new socket is told to try again later (1013),
            # which a client can tell from a refused token (HTTP 403 before the upgrade).
            url = f"{faults.ws_urls[1]}?token={crowd[0].token}"
            async with websockets.connect(url) as ws:
                with pytest.raises(websockets.ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
                refusals.append(ws.close_code)
        await asyncio.sleep(1.0)  # down for a moment: commands meanwhile wait and retry

    async def lift() -> None:
        await asyncio.to_thread(faults.stack.start, kind)

    await run_fault(f"restart {kind}", crowd, report, inject, lift)
    if kind == "redis":
        assert refusals == [1013]
    # No process gave up: everything that was running still is.
    assert not faults.unexpectedly_dead(), f"died on a {kind} restart"


async def test_an_idle_room_closes_and_its_queue_and_chat_go(
    faults: FaultSystem, crowd: list[ResilientClient], report: dict[str, Any]
) -> None:
    """ROOM_CLOSE_AFTER_EMPTY_SECONDS (3 s here) after its last member left, a room is gone,
    and so are its queue and chat rows (the janitor asks each owner)."""
    owner = crowd[0]
    room = (await owner.command("room.create", {}))["room"]["code"]
    await owner.join(room)
    await owner.command("queue.add", {"video_id": VIDEO}, room)
    await owner.command("chat.send", {"text": "bye"}, room)
    await owner.command("leave", {}, room)
    owner.rooms.pop(room, None)
    left = time.monotonic()
    dsn = faults.stack.urls["DATABASE_URL"].replace("postgresql+psycopg", "postgresql")

    def rows() -> dict[str, int]:
        with psycopg.connect(dsn) as conn:
            return {
                table: conn.execute(
                    f"select count(*) from {table} where room = %s",
                    (room,),
                ).fetchone()[0]
                for table in ("room_seq", "queue_entries", "chat_messages", "rooms_members")
            }

    assert all(rows().values()), rows()
    while any(rows().values()):
        assert time.monotonic() - left < 60, f"not closed: {rows()}"
        await asyncio.sleep(0.25)
    report["idle room closed"] = {"closed_after_s": round(time.monotonic() - left, 3)}
    reply = await owner.request("join", {}, room)
    assert reply["error"]["code"] == "not_found"


async def test_after_every_fault_every_process_is_up_and_ready(
    faults: FaultSystem, report: dict[str, Any]
) -> None:
    assert not faults.unexpectedly_dead()
    ready = []
    for process in faults.alive("gateway"):
        port = faults.started_with[process.name]["PORT"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            ready.append((await http.get("/readyz")).status_code)
    assert ready and all(code == 200 for code in ready), ready
    # Outages are logged where they happen; count the tracebacks for the notes.
    report["logs"] = {
        "processes": len(faults.system.processes),
        "tracebacks": sum(
            p.log_path.read_text(errors="replace").count("Traceback")
            for p in faults.system.processes
        ),
    }
