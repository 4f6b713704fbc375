"""One trace from the gateway through NATS into the owning service and its database.

In one process: the real gateway app under uvicorn and the rooms service's router, on a NATS
of their own (so the session's rooms replicas cannot take the request), with an in-memory
span exporter. A `room.create` over the socket must yield gateway → bus request → rooms
handler → SQL spans, all in one trace, parented across the NATS hop by `traceparent`.
"""

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
import uvicorn
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from websockets.asyncio.client import connect

from services.common import bus, devstack, metrics, tokens
from services.common.contracts.models import UserRef
from services.common.devstack import free_port
from services.gateway.app import create_app
from services.gateway.server import config_for
from services.gateway.settings import GatewaySettings
from services.rooms.handlers import build_router
from services.rooms.playback import Timing
from services.rooms.service import RoomsService

pytestmark = pytest.mark.integration

SECRET = "trace-secret-0123456789abcdef0123456789"


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per process; nothing else sets one in tests
    return exporter


@pytest.fixture
def own_nats(tmp_path: Path) -> AsyncIterator[str]:
    proc, url = devstack.start_nats(tmp_path / "nats")
    try:
        yield url
    finally:
        proc.stop()


@contextlib.asynccontextmanager
async def gateway(settings: GatewaySettings) -> AsyncIterator[None]:
    config = config_for(create_app(settings), settings, loop="asyncio")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(300):
            if server.started:
                break
            assert not task.done(), task
            await asyncio.sleep(0.1)
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def test_one_trace_spans_gateway_bus_service_and_db(
    exporter: InMemorySpanExporter, own_nats: str, upkeep_db_url: str, engine, infra
) -> None:
    metrics.instrument_engine(engine)
    nc = await bus.connect(own_nats, "rooms-test")
    service = RoomsService(engine, nc, Timing(200, 1500))
    await build_router(service).serve(nc, 8)
    port = free_port()
    settings = GatewaySettings(
        nats_url=own_nats, redis_url=infra["REDIS_URL"], jwt_secret=SECRET, port=port
    )
    token = tokens.issue(SECRET, UserRef(id=uuid.uuid4().hex, name="Ann"), 600, "s1")
    exporter.clear()
    try:
        async with gateway(settings), connect(f"ws://127.0.0.1:{port}/ws?token={token}") as ws:
            await ws.send(json.dumps({"id": "c1", "type": "room.create", "data": {}}))
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if reply.get("re") == "c1":
                    break
            assert reply["ok"], reply
            # A join publishes a members event: its headers carry the join's trace.
            code = reply["data"]["room"]["code"]
            published: asyncio.Queue = asyncio.Queue()
            watcher = await nats.connect(own_nats)
            await watcher.subscribe(f"st.room.{code}.evt.>", cb=published.put)
            await watcher.flush()
            await ws.send(json.dumps({"id": "c2", "type": "join", "room": code, "data": {}}))
            event = await asyncio.wait_for(published.get(), 30)
            await watcher.close()
    finally:
        service.close()
        await nc.drain()

    spans = exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    root = by_name["ws room.create"]
    kinds = {s.kind for s in spans if s.name == "st.rooms.cmd.create"}
    assert kinds == {trace.SpanKind.CLIENT, trace.SpanKind.SERVER}
    server = next(
        s for s in spans if s.name == "st.rooms.cmd.create" and s.kind == trace.SpanKind.SERVER
    )
    client = next(
        s for s in spans if s.name == "st.rooms.cmd.create" and s.kind == trace.SpanKind.CLIENT
    )
    trace_id = root.context.trace_id
    assert root.parent is None, "a command is the root of its own trace, not the socket's"
    assert by_name["ws join"].context.trace_id != trace_id
    assert client.context.trace_id == trace_id and client.parent.span_id == root.context.span_id
    # Across NATS: the service's span is the child of the gateway's request span.
    assert server.context.trace_id == trace_id and server.parent.span_id == client.context.span_id
    db_spans = [s for s in spans if s.name.startswith("db ") and s.context.trace_id == trace_id]
    assert any(s.name == "db insert" for s in db_spans), [s.name for s in spans]
    names = {s.context.span_id: s.name for s in spans}
    assert all(s.parent.span_id == server.context.span_id for s in db_spans), [
        (s.name, names.get(s.parent.span_id), s.attributes)
        for s in db_spans
        if s.parent.span_id != server.context.span_id
    ]
    join = by_name["ws join"]
    traceparent = (event.headers or {}).get("traceparent", "")
    assert traceparent.split("-")[1] == format(join.context.trace_id, "032x"), event.headers
    # Room codes never name a span (subject templates do).
    assert not [s.name for s in spans if code in s.name]
