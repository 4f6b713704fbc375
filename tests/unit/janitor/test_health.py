"""The janitor's small HTTP face for the chart: /healthz, /readyz, /metrics."""

import asyncio

from services.common.devstack import free_port
from services.janitor import health


async def get(port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_probes_and_metrics() -> None:
    ready = {"now": False}
    port = free_port()
    server = await health.serve("127.0.0.1", port, lambda: ready["now"])
    try:
        assert await get(port, "/healthz") == (200, b'{"status":"alive"}')
        assert await get(port, "/readyz") == (503, b'{"ready":false}')
        ready["now"] = True
        assert (await get(port, "/readyz?x=1"))[0] == 200
        status, body = await get(port, "/metrics")
        assert status == 200 and b"sharetube_janitor_leader" in body
        assert (await get(port, "/nothing"))[0] == 404
    finally:
        server.close()
        await server.wait_closed()
