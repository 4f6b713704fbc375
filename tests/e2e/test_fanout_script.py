"""scripts/fanout.py keeps working: it starts its own system, times a small room and writes
its report. Behaviour only (every event delivered in order, the report complete), never
timings. With two CPUs or more it pins the system to one and itself to another."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 20
ROUNDS = 5


@pytest.mark.timeout(180)
def test_fanout_script_reports_every_round_delivered_to_every_member(tmp_path: Path) -> None:
    out = tmp_path / "f.json"
    argv = [sys.executable, "scripts/fanout.py", "--start", "--no-color"]
    argv += ["--clients", str(CLIENTS), "--rounds", str(ROUNDS), "--out", str(out)]
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2
    if pinned:
        argv += ["--stack-cpus", str(cpus[0]), "--client-cpus", str(cpus[-1])]
    try:
        done = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed it by now
        pytest.fail(f"fanout.py did not finish in 120 s:\n{exc.stderr}")
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "to last member" in done.stdout

    report = json.loads(out.read_text())
    assert {
        "config",
        "gateway_pid",
        "to_last_member_ms",
        "per_member_ms",
        "rss_kb",
        "rss_per_connection_kb",
        "rounds_complete",
        "lost_events",
        "closed_sockets",
        "stragglers",
        "phases",
        "rounds_detail",
        "first_member_ms",
        "timestamps",
        "sequence",
        "gateways",
        "pinning",
    } <= report.keys()
    assert report["ok"] is True
    assert report["config"]["clients"] == CLIENTS
    assert report["config"]["rounds"] == ROUNDS

    # Every seek reached every member: nothing lost, no socket dropped.
    assert report["lost_events"] == 0
    assert report["closed_sockets"] == 0
    assert report["rounds_complete"] == ROUNDS
    assert report["stragglers"]["count"] == 0  # every joined member got the join's events
    # Each member's room events ran on from its join snapshot without a gap or a step back,
    # and all of them ended at the same version.
    seq = report["sequence"]
    assert seq["lost"] == 0 and seq["reordered"] == 0
    assert seq["same_sequence"] is True and len(seq["last_v"]) == 1
    assert seq["events"] > 0
    # Every arrival has a time, from the kernel where the socket gave one.
    stamps = report["timestamps"]
    assert stamps["kernel"] + stamps["user"] == ROUNDS * CLIENTS
    if pinned:
        assert report["pinning"]["client_affinity"] == str(cpus[-1])
        assert report["pinning"]["gateway_affinity"] == [str(cpus[0])]
        assert report["pinning"]["stack_pinned_before_rounds"]["processes"] >= 5
    rounds = report["rounds_detail"]
    assert [r["position_ms"] for r in rounds] == [k * 1000 for k in range(1, ROUNDS + 1)]
    for r in rounds:
        assert r["reply_ok"] is True
        assert r["delivered"] == CLIENTS and r["missing"] == 0
        assert len(r["member_ms"]) == CLIENTS
        assert all(x > 0 for x in r["member_ms"])
        assert r["to_last_ms"] == max(r["member_ms"])

    for key in ("to_last_member_ms", "per_member_ms"):
        stats = report[key]
        assert {"p50", "p95", "p99", "max"} <= stats.keys()
        assert 0 < stats["p50"] <= stats["p95"] <= stats["p99"] <= stats["max"]
    assert report["to_last_member_ms"]["count"] == ROUNDS
    assert report["per_member_ms"]["count"] == ROUNDS * CLIENTS

    # With --start the script knows the gateway's PID, so memory is measured.
    assert isinstance(report["gateway_pid"], int)
    assert all(isinstance(report["rss_kb"][k], int) for k in ("before", "after_join"))
    assert isinstance(report["rss_per_connection_kb"], int | float)

    # The gateway's collections during the rounds, read from its /metrics: one row per
    # gateway with every generation (a few rounds may run none: the writes allocate little).
    (gc_rounds,) = report["gateway_gc_during_rounds"]
    generations = gc_rounds["by_generation"]
    assert set(generations) == {"0", "1", "2"}
    assert all(g["collections"] >= 0 and g["seconds"] >= 0 for g in generations.values())
    assert 0 <= gc_rounds["over_10ms"] <= sum(g["collections"] for g in generations.values())

    # What ran on the stack's CPU in each round, from the scheduler's per-thread run times:
    # the gateway writes every event, so it ran in a typical round; each slowest round is
    # listed with what ran longer in it than usual.
    cpu = report["cpu_during_rounds"]
    if pinned:
        assert cpu["typical_round_ms"].get("gateway-0", 0) > 0
        slowest = cpu["slowest_rounds"]
        assert 1 <= len(slowest) <= ROUNDS
        assert [s["to_last_ms"] for s in slowest] == sorted(
            (s["to_last_ms"] for s in slowest), reverse=True
        )
        assert max(s["to_last_ms"] for s in slowest) == report["to_last_member_ms"]["max"]
        assert all(s["busy_ms"] > 0 for s in slowest)
        assert "slowest rounds" in done.stdout
    else:
        assert cpu is None


@pytest.mark.timeout(180)
def test_fanout_script_with_players_times_each_seek_until_every_player_plays(
    tmp_path: Path,
) -> None:
    """--players: the members join as players and answer each `starting` with `ready`; a round
    ends when `playing` has reached every member, after its `starting` did."""
    out = tmp_path / "players.json"
    argv = [sys.executable, "scripts/fanout.py", "--start", "--no-color", "--players"]
    argv += ["--clients", str(CLIENTS), "--rounds", "3", "--out", str(out), "--quiet"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "starting to last" in done.stdout

    report = json.loads(out.read_text())
    assert report["ok"] is True
    assert report["config"]["players"] is True
    assert report["ready_failed"] == {}  # every `ready` was taken
    assert report["rounds_complete"] == 3 and report["lost_events"] == 0
    for r in report["rounds_detail"]:
        # `playing` came after every player's `starting` (and so after its `ready`).
        assert r["delivered"] == CLIENTS
        assert 0 < r["starting_to_last_ms"] <= r["to_last_ms"]
    starting = report["starting_to_last_member_ms"]
    assert starting["count"] == 3
    assert starting["p50"] <= report["to_last_member_ms"]["p50"]
