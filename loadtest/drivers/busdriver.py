"""The drivers that bypass the gateway: a bus client, a population of rooms, the event check."""

from typing import Any

from services.common.contracts import subjects

from ..busclient import BusClient, Reply, check_envelope_shape
from ..population import Population
from ..sequence import combine
from .base import Driver


class BusDriver(Driver):
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "transport" not in cls.__dict__:
            subject = subjects.command(cls.service, "<command>")
            cls.transport = f"NATS request/reply on {subject} (the gateway's envelope)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bus: BusClient | None = None
        self.population: Population | None = None

    async def setup(self) -> None:
        check_envelope_shape()
        self.bus = await BusClient.connect(
            self.target.nats_url, f"loadtest-{self.service}", self.options.timeout_s
        )
        self.population = Population(
            self.bus,
            self.rooms,
            self.members,
            self.options.setup_concurrency,
            self.progress,
            self.target.redis_url,
        )
        await self.population.start()
        await self.prepare()

    async def prepare(self) -> None:
        """What the rooms need before the load (after they exist with their members)."""

    def count(self, kind: str, reply: Reply) -> None:
        tally = self.tallies[kind]
        if reply.ok:
            tally.ok(reply.latency_ms)
        else:
            tally.failed(reply.code or "internal", acked=reply.acked)

    def lost_so_far(self) -> int:
        return self.population.lost_so_far() if self.population is not None else 0

    async def settle(self) -> dict[str, Any]:
        assert self.population is not None and self.bus is not None
        extra = await self.population.settle()
        events = combine([room.stream for room in self.population.rooms])
        return {
            "lost": events["lost"],
            "reordered": events["reordered"] + events["duplicates"],
            "events": events,
            # A slow consumer here would be this process dropping events.
            "nats_client_errors": dict(self.bus.nats_errors),
            **extra,
        }

    async def teardown(self) -> None:
        if self.population is not None:
            await self.population.stop()
        if self.bus is not None:
            await self.bus.close()
