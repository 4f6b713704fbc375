"""/metrics, /healthz, /readyz on every process; drift reports; every dashboard query
answered by a real Prometheus (Debian's `prometheus`) scraping the running system."""

import asyncio
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.devstack import free_port
from tests.e2e.conftest import Connect, new_room
from tests.support.system import ROOT, ServiceProcess, System

pytestmark = pytest.mark.e2e

DASHBOARDS = ROOT / "deploy/grafana/dashboards"
_PORT_LINE = re.compile(r"metrics on http://127\.0\.0\.1:(\d+)/metrics")


def metrics_port(process: ServiceProcess, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _PORT_LINE.search(process.log_path.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        time.sleep(0.2)
    raise AssertionError(f"{process.name} logged no metrics port:\n{process.log()}")


def targets(system: System) -> dict[str, list[str]]:
    """job → host:port of every running process's /metrics (the gateway on its own port)."""
    jobs: dict[str, list[str]] = {}
    for p in system.processes:
        if p.proc.poll() is not None:
            continue
        job = p.name.rsplit("-", 1)[0]
        if job == "gateway":
            continue  # the gateway serves /metrics on PORT, below
        if job == "janitor" and "metrics on" not in p.log_path.read_text(errors="replace"):
            continue  # the janitor serves none unless METRICS_PORT is set
        jobs.setdefault(job, []).append(f"127.0.0.1:{metrics_port(p)}")
    jobs["gateway"] = [f"127.0.0.1:{system.port}"]
    return jobs


def test_every_service_serves_metrics_health_and_readiness(system: System) -> None:
    for job, addresses in targets(system).items():
        for address in addresses:
            base = f"http://{address}"
            assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200, job
            ready = httpx.get(f"{base}/readyz", timeout=10)
            assert ready.status_code == 200, (job, ready.text)
            text = httpx.get(f"{base}/metrics", timeout=10).text
            assert "sharetube_" in text, job
            if job == "gateway":
                assert "sharetube_gateway_connections " in text
            elif job in ("rooms", "queue", "chat", "auth"):
                assert "sharetube_commands_total" in text, job
                assert "sharetube_db_query_duration_seconds" in text, job
                readiness = json.loads(ready.text)
                assert readiness["nats"] and readiness["db"], readiness


def _sample(url: str, name: str) -> float:
    text = httpx.get(url, timeout=10).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_drift_reports_become_a_histogram(system: System, connect: Connect) -> None:
    client = await connect()
    url = f"{system.base_url}/metrics"
    before = _sample(url, "sharetube_gateway_sync_drift_seconds_count")
    assert await client.call("drift.report", {"drift_ms": -42.5, "rate": 1.02}) == {}
    assert await client.call("drift.report", {"drift_ms": 3}) == {}
    for bad in ({}, {"drift_ms": 10**9}, {"drift_ms": 1, "rate": 0}, {"drift_ms": 1, "x": 1}):
        reply = await client.request("drift.report", bad)
        assert not reply["ok"] and reply["error"]["code"] == "bad_request", bad
    after = _sample(url, "sharetube_gateway_sync_drift_seconds_count")
    assert after - before == 2


# -- a real Prometheus ----------------------------------------------------------------------


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        # Debian's package; its service is never started (the test runs the binary itself).
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
            check=True,
            capture_output=True,
            timeout=600,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        found = shutil.which("prometheus")
    assert found, "prometheus is not installed"
    return found


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) for every target of every panel."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for p in board["panels"]:
            for target in p.get("targets", []):
                found.append((path.name, p["title"], target["expr"]))
    return found


def substitute(expr: str) -> str:
    for variable in ("$__rate_interval", "${__rate_interval}", "$__interval", "${__interval}"):
        expr = expr.replace(variable, "1m")
    return expr.replace("${datasource}", "").replace("$datasource", "")


def test_every_dashboard_uses_the_datasource_variable() -> None:
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        names = [v["name"] for v in board["templating"]["list"]]
        assert "datasource" in names, path.name
        for p in board["panels"]:
            assert p["datasource"]["uid"] == "${datasource}", (path.name, p["title"])
    assert {p.name for p in DASHBOARDS.glob("*.json")} >= {
        "overview.json",
        "sync.json",
        *(f"{s}.json" for s in ("gateway", "rooms", "queue", "chat", "auth", "janitor")),
    }


async def _traffic(connect: Connect) -> None:
    """Commands on every service, errors among them, drift reports, chat, playback."""
    owner = await connect()
    friend = await connect()
    room = await new_room(owner, control_mode="owner_only")
    await owner.call("join", room=room)
    await friend.call("join", room=room)
    await owner.call("queue.add", {"video_id": "dQw4w9WgXcQ"}, room=room)
    sent = await owner.call("chat.send", {"text": "hello"}, room=room)
    await owner.call("chat.delete", {"message_id": sent["message"]["id"]}, room=room)
    # Playback commands, whatever their outcome (a code either way); owner_only refuses the
    # friend, so an error code is counted too.
    await owner.request("play", room=room)
    await owner.request("seek", {"position_ms": 1000}, room=room)
    denied = await friend.request("pause", room=room)
    assert not denied["ok"]
    for drift in (-300.0, -20.0, 5.0, 80.0, 1500.0):
        await friend.call("drift.report", {"drift_ms": drift, "rate": 1.01})
    await owner.call("chat.history", room=room)


def _api(base: str, path: str, **params: Any) -> Any:
    reply = httpx.get(f"{base}{path}", params=params, timeout=30)
    body = reply.json()
    assert body.get("status") == "success", (path, params, body)
    return body["data"]


def _start_prometheus(binary: str, tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    with (tmp_path / "prometheus.log").open("wb") as log:  # the child keeps its descriptor
        return subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _ready(prom: subprocess.Popen[bytes], tmp_path: Path, base: str) -> bool:
    assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
    try:
        return httpx.get(f"{base}/-/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


async def test_every_dashboard_query_returns_series(
    system: System, connect: Connect, tmp_path: Path
) -> None:
    binary = prometheus_binary()
    janitor_port = free_port()
    janitor = system.start_service(
        "janitor", {"METRICS_PORT": str(janitor_port), "METRICS_HOST": "127.0.0.1"}
    )
    prom: subprocess.Popen[bytes] | None = None
    try:
        metrics_port(janitor)
        jobs = targets(system)
        assert set(jobs) == {"gateway", "rooms", "queue", "chat", "auth", "janitor"}, jobs
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": addresses}]}
                for job, addresses in jobs.items()
            ],
        }
        (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        port = free_port()
        prom = _start_prometheus(binary, tmp_path, port)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while not _ready(prom, tmp_path, base):
            assert time.monotonic() < deadline, "prometheus did not become ready"
            await asyncio.sleep(0.5)

        # Traffic, a pause of a few scrapes, traffic again: every rate() sees two samples.
        await _traffic(connect)
        await asyncio.sleep(4)
        await _traffic(connect)
        deadline = time.monotonic() + 60
        while True:
            up = _api(base, "/api/v1/query", query="up")
            healthy = {r["metric"]["job"] for r in up["result"] if r["value"][1] == "1"}
            counted = _api(base, "/api/v1/query", query="count(sharetube_commands_total)")
            if healthy == set(jobs) and counted["result"]:
                break
            assert time.monotonic() < deadline, (healthy, up)
            await asyncio.sleep(1)
        await asyncio.sleep(3)  # two more scrapes after the last traffic

        empty = []
        queries = dashboard_queries()
        assert len(queries) > 30
        for board, title, expr in queries:
            data = _api(base, "/api/v1/query", query=substitute(expr))
            if not data["result"]:
                empty.append((board, title, expr))
        assert not empty, empty
    finally:
        if prom is not None and prom.poll() is None:
            prom.terminate()
            try:
                prom.wait(15)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait(5)
        janitor.stop()
        system.processes.remove(janitor)
