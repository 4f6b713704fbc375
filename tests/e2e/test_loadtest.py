"""The load tool keeps working: every driver, tiny, against the shared system (two replicas of
rooms, queue and chat, a janitor), and the command line once with a stack of its own.
Behaviour only (the report's shape, work done, nothing lost), never timings."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loadtest import LoadOptions, Target, run_driver
from tests.support.system import ROOT, System

pytestmark = pytest.mark.e2e

COMMON_KEYS = {
    "service",
    "transport",
    "scenario",
    "config",
    "target",
    "machine",
    "ops",
    "ops_per_s",
    "errors",
    "errors_by_code",
    "unacked",
    "latency_ms",
    "by_kind",
    "lost",
    "reordered",
    "ok",
    "schedule",
    "processes",
    "phases",
}
LATENCY_KEYS = {"count", "p50", "p95", "p99", "max", "mean"}


def target_of(system: System) -> Target:
    return Target(
        base_urls=(system.base_url,),
        nats_url=system.env["NATS_URL"],
        redis_url=system.env["REDIS_URL"],
        pids={p.name: p.proc.pid for p in system.processes},
    )


async def run_tiny(system: System, service: str, **kw: Any) -> dict[str, Any]:
    options = LoadOptions(duration_s=1.5, rate=20, rooms=2, members=3, quiet=True, **kw)
    report = await run_driver(service, options, target_of(system))
    json.dumps(report)  # the report is plain JSON
    assert COMMON_KEYS <= report.keys()
    assert report["service"] == service
    assert LATENCY_KEYS <= report["latency_ms"].keys()
    assert report["ops"] > 0
    assert report["ops"] == report["latency_ms"]["count"]
    assert report["errors"] == 0, report["errors_by_code"]
    assert report["lost"] == 0 and report["reordered"] == 0 and report["unacked"] == 0
    assert report["ok"] is True
    assert report["schedule"]["mode"] == "open" and report["schedule"]["unfinished"] == 0
    assert "loadtest (this process)" in report["processes"]
    assert any(name.startswith(service) for name in report["processes"])
    return report


def assert_events_complete(report: dict[str, Any]) -> None:
    events = report["events"]
    assert events["received"] > 0
    assert events["lost"] == events["reordered"] == events["duplicates"] == 0


async def test_rooms_driver(system: System) -> None:
    report = await run_tiny(system, "rooms")
    assert set(report["by_kind"]) == {"seek", "pause", "play", "rate"}
    assert_events_complete(report)
    assert report["events"]["streams"] == 2  # one per room, each from version 1
    assert "st.rooms.cmd" in report["transport"]


async def test_queue_driver(system: System) -> None:
    report = await run_tiny(system, "queue")
    assert set(report["by_kind"]) == {"queue.add", "queue.move", "queue.remove"}
    assert all(k["ops"] > 0 for k in report["by_kind"].values())
    assert_events_complete(report)


async def test_chat_driver(system: System) -> None:
    report = await run_tiny(system, "chat")
    assert set(report["by_kind"]) == {"chat.send"}
    messages = report["messages"]
    assert messages["persisted"] == report["ops"]
    assert messages["delivered"] == messages["persisted"] and messages["undelivered"] == 0
    assert report["delivered_ms"]["count"] == report["ops"]
    assert_events_complete(report)


@pytest.mark.parametrize(
    ("service", "command"), [("queue", "queue.load"), ("chat", "chat.history")]
)
async def test_read_drivers(system: System, service: str, command: str) -> None:
    """--reads: the part of a join's snapshot each service serves, every reply whole (a
    reply missing an entry or a message counts as an error)."""
    report = await run_tiny(system, service, reads=True)
    assert set(report["by_kind"]) == {command}
    assert report["config"]["reads"] is True
    assert command in report["scenario"]


@pytest.mark.parametrize("via", ["nats", "http"])
async def test_auth_driver(system: System, via: str) -> None:
    report = await run_tiny(system, "auth", auth_via=via)
    assert set(report["by_kind"]) == {"guest"}
    assert report["config"]["via"] == via
    assert report["transport"].startswith("NATS" if via == "nats" else "HTTP POST /auth/guest")


async def test_gateway_driver(system: System) -> None:
    report = await run_tiny(system, "gateway", probes=2)
    assert set(report["by_kind"]) == {"seek"}
    assert_events_complete(report)
    # Every acknowledged seek reached every member of its room, the sender included.
    assert report["deliveries"]["missing"] == 0
    assert report["deliveries"]["received"] == report["ops"] * 3
    assert report["delivery_ms"]["count"] == report["ops"] * 3
    assert report["sockets"] == {"open": 8, "closed": 0, "stray_events": 0, "notices": {}}
    sync = report["sync"]
    assert sync["probes"] == 2 and sync["clock_syncs"] > 0 and sync["failed_pings"] == 0
    assert LATENCY_KEYS <= sync["offset_error_ms"].keys()
    assert sync["offset_error_ms"]["count"] == sync["clock_syncs"]
    assert sync["spread_ms"]["count"] > 0  # both probes computed positions while playing
    assert sync["ping_rtt_ms"]["count"] >= sync["clock_syncs"]


def test_command_line_starts_a_pinned_stack_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    argv = [sys.executable, "-m", "loadtest", "rooms", "--start", "--quiet", "--no-color"]
    argv += ["--duration", "1", "--rate", "20", "--rooms", "2", "--members", "2"]
    argv += ["--replicas", "rooms=2", "--out", str(out)]
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2
    if pinned:
        argv += ["--stack-cpus", str(cpus[0]), "--client-cpus", str(cpus[1])]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "OK: nothing lost" in done.stdout
    report = json.loads(out.read_text())
    assert COMMON_KEYS <= report.keys() and report["ok"] is True
    assert report["target"]["started_stack"] is True
    assert {"rooms-0", "rooms-1", "nats", "postgres", "redis"} <= report["processes"].keys()
    if pinned:
        placement = report["placement"]
        assert placement["stack_cpus"] == [cpus[0]] and placement["client_cpus"] == [cpus[1]]
        assert placement["stack_audit"]["threads"] > 0
        assert placement["stack_audit"]["outside"] == 0, placement["stack_audit"]
        assert placement["client_audit"]["outside"] == 0
        assert report["machine"]["this_process_cpus"] == [cpus[1]]
