"""/healthz, /readyz and /metrics on METRICS_PORT, for the chart's probes and ServiceMonitor.

The janitor serves no other HTTP, so a few lines of asyncio rather than a web framework:
GET only, one request per connection. Ready = the bus is connected and Redis answered the
last lease call (a standby is ready too: it is doing its job, waiting).
"""

import asyncio
import contextlib
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

_MAX_REQUEST_LINE = 4096


async def serve(host: str, port: int, ready: Callable[[], bool]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            parts = line[:_MAX_REQUEST_LINE].decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 and parts[0] == "GET" else ""
            if path == "/healthz":
                status, body, kind = 200, b'{"status":"alive"}', "application/json"
            elif path == "/readyz":
                ok = ready()
                status, body, kind = (
                    (200 if ok else 503),
                    b'{"ready":%s}' % (b"true" if ok else b"false"),
                    "application/json",
                )
            elif path == "/metrics":
                status, body, kind = 200, generate_latest(), CONTENT_TYPE_LATEST
            else:
                status, body, kind = 404, b"not found", "text/plain"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)
