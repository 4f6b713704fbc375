"""auth: guest sign-ins.

Over the bus by default: `st.auth.cmd.guest`, the service-to-service command the gateway's
POST /auth/guest asks (internal: the caller is a service, `svc:` user). With
`--auth-via http`, POST /auth/guest on the gateways instead (HTTP keep-alive, one connection
per in-flight request): the user-facing path, gateway included. Each reply must carry a token.
"""

from typing import Any

import httpx

from services.common.bus import internal_envelope
from services.common.contracts import subjects
from services.common.contracts.envelope import GuestRequest

from ..busclient import BusClient, Reply, ms_since
from .base import Defaults, Driver

TIMEOUT_S = 3.0  # the gateway's own for a guest sign-in (services/gateway/app.py)


class AuthDriver(Driver):
    service = "auth"
    transport = "NATS request/reply on st.auth.cmd.guest"
    defaults = Defaults(rooms=0, members=0, rate=100.0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.via = self.options.auth_via
        if self.via == "http":
            self.transport = "HTTP POST /auth/guest on the gateway (which asks st.auth.cmd.guest)"
        self.bus: BusClient | None = None
        self.http: httpx.AsyncClient | None = None

    def config(self) -> dict[str, Any]:
        return {"via": self.via}

    def scenario(self) -> str:
        return "guest sign-ins (a user row and a signed token each)"

    def op_timeout_s(self) -> float:
        return self.options.timeout_s or TIMEOUT_S

    async def setup(self) -> None:
        if self.via == "http":
            n = self.options.concurrency
            self.http = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
                timeout=self.op_timeout_s(),
                trust_env=False,
            )
        else:
            self.bus = await BusClient.connect(self.target.nats_url, "loadtest-auth", None)

    async def operation(self, index: int, due: float) -> None:
        name = f"load{index}"
        reply = await (self._http(index, name, due) if self.http else self._nats(name, due))
        tally = self.tallies["guest"]
        if reply.ok and reply.data.get("token"):
            tally.ok(reply.latency_ms)
        else:
            tally.failed(reply.code or "no_token", acked=reply.acked)

    async def _nats(self, name: str, due: float) -> Reply:
        assert self.bus is not None
        payload = internal_envelope(GuestRequest(name=name)).model_dump_json().encode()
        return await self.bus.ask(
            subjects.command("auth", "guest"), payload, due, self.op_timeout_s()
        )

    async def _http(self, index: int, name: str, due: float) -> Reply:
        assert self.http is not None
        urls = self.target.base_urls
        try:
            response = await self.http.post(
                f"{urls[index % len(urls)]}/auth/guest", json={"name": name}
            )
        except httpx.TimeoutException:
            return Reply(False, {}, "timeout", acked=False, latency_ms=ms_since(due))
        except httpx.HTTPError as exc:
            return Reply(False, {}, type(exc).__name__, latency_ms=ms_since(due))
        if response.status_code != 200:
            try:
                code = str(response.json()["error"]["code"])
            except (ValueError, KeyError, TypeError):
                code = f"http_{response.status_code}"
            return Reply(False, {}, code, latency_ms=ms_since(due))
        return Reply(True, response.json(), latency_ms=ms_since(due))

    async def teardown(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        if self.bus is not None:
            await self.bus.close()
