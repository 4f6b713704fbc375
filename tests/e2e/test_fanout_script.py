"""scripts/fanout.py keeps working: it starts its own system, times a small room and writes
its report. Behaviour only (every event delivered, the report complete), never timings."""

import json
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
    } <= report.keys()
    assert report["config"]["clients"] == CLIENTS
    assert report["config"]["rounds"] == ROUNDS

    # Every seek reached every member: nothing lost, no socket dropped.
    assert report["lost_events"] == 0
    assert report["closed_sockets"] == 0
    assert report["rounds_complete"] == ROUNDS
    assert report["stragglers"]["count"] == 0  # every joined member got the join's events
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
