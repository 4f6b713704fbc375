"""The /metrics, /healthz, /readyz server every non-gateway service runs (common/health.py)."""

import httpx
import pytest

from services.common import health, tracing
from services.common.metrics import COMMANDS


async def _get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(url, timeout=10)


async def test_health_readiness_and_metrics() -> None:
    state = {"redis": True}

    async def nats_ok() -> bool:
        return True

    async def redis_ok() -> bool:
        if not state["redis"]:
            raise ConnectionError("redis away")
        return True

    refreshed = []

    async def refresh() -> None:
        refreshed.append(1)

    health.before_scrape(refresh)
    try:
        checks = {"nats": nats_ok, "redis": redis_ok}
        async with health.serving("test", "127.0.0.1", 0, checks) as server:
            base = f"http://127.0.0.1:{health.bound_port(server)}"
            assert (await _get(f"{base}/healthz")).json() == {"status": "alive"}
            ready = await _get(f"{base}/readyz")
            assert ready.status_code == 200 and ready.json() == {"nats": True, "redis": True}
            state["redis"] = False
            ready = await _get(f"{base}/readyz")
            assert ready.status_code == 503 and ready.json() == {"nats": True, "redis": False}
            COMMANDS.labels("test", "ping", "ok").inc()
            text = (await _get(f"{base}/metrics")).text
            assert 'sharetube_commands_total{code="ok",command="ping",service="test"}' in text
            assert refreshed
            assert (await _get(f"{base}/nope")).status_code == 404
    finally:
        health._before_scrape.remove(refresh)


async def test_a_taken_port_falls_back_to_a_free_one() -> None:
    first = await health.start("127.0.0.1", 0, {})
    try:
        taken = health.bound_port(first)
        second = await health.start("127.0.0.1", taken, {})
        assert health.bound_port(second) != taken
        second.close()
        await second.wait_closed()
    finally:
        first.close()
        await first.wait_closed()


def test_tracing_is_silent_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    tracing.setup("test")
    assert not tracing._configured
    headers = tracing.inject({"x": "1"})
    assert headers["x"] == "1"
