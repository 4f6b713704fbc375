"""What every driver shares: set up, run the schedule with a progress line, check, report.

A driver says what one operation is (`operation`), what the run needs first (`setup`), what
it verifies afterwards (`settle`: lost, reordered, unacked, its own sections) and what it
tears down. The schedule, the tallies and the report's common part are here.
"""

import time
from dataclasses import dataclass
from typing import Any, ClassVar

from .. import pacing, report
from ..options import LoadOptions, Target
from ..procstats import ProcessMeter
from ..progress import Progress, Reading
from ..stats import Tallies

# The video every room queues: any well-formed id (nothing here fetches it).
VIDEO_ID = "dQw4w9WgXcQ"
# After the schedule ends, operations in flight get this long on top of their own timeout.
DRAIN_MARGIN_S = 2.0


@dataclass(frozen=True)
class Defaults:
    rooms: int
    members: int
    rate: float  # ops/s


class Driver:
    service: ClassVar[str]
    # What the operations go through, for the report ("nats request/reply on ...", ...).
    transport: ClassVar[str]
    # When the options leave them None.
    defaults: ClassVar[Defaults] = Defaults(rooms=50, members=4, rate=200.0)

    def __init__(self, options: LoadOptions, target: Target) -> None:
        self.options = options
        self.target = target
        self.rooms = options.rooms or self.defaults.rooms
        self.members = options.members or self.defaults.members
        self.rate = self.defaults.rate if options.rate is None else options.rate
        self.tallies = Tallies()
        self.progress = Progress(self.service, options.quiet)

    # -- what each driver provides --------------------------------------------------------

    async def setup(self) -> None:
        pass

    async def operation(self, index: int, due: float) -> None:
        raise NotImplementedError

    async def settle(self) -> dict[str, Any]:
        """After the load: the checks' sections, with at least `lost` and `reordered`."""
        return {"lost": 0, "reordered": 0}

    async def teardown(self) -> None:
        pass

    async def load_starting(self) -> None:
        """Right before the first operation (after setup)."""

    async def load_stopped(self) -> None:
        """Right after the last operation has finished or been given up on."""

    def lost_so_far(self) -> int:
        return 0

    def config(self) -> dict[str, Any]:
        """The driver's own settings for the report."""
        return {"rooms": self.rooms, "members": self.members}

    def scenario(self) -> str:
        """One line saying what the load is, for the report's table."""
        return f"{self.rooms} rooms x {self.members} members"

    def op_timeout_s(self) -> float:
        return self.options.timeout_s or 5.0

    # -- the run --------------------------------------------------------------------------

    def reading(self) -> Reading:
        total = self.tallies.total()
        return Reading(
            ops=total.ops,
            p99_ms=total.latency.quantile(0.99),
            errors=sum(total.errors.values()),
            lost=self.lost_so_far() + total.unacked,
        )

    async def run(self) -> dict[str, Any]:
        phases: dict[str, float] = {}
        try:
            t = time.monotonic()
            await self.setup()
            phases["setup_s"] = round(time.monotonic() - t, 3)
            meter = ProcessMeter(self.target.pids)
            meter.start()
            how = f"{self.rate:g}/s open loop" if self.rate > 0 else "closed loop"
            self.progress.note(
                f"load: {how}, at most {self.options.concurrency} in flight, "
                f"{self.options.duration_s:g} s"
            )
            await self.load_starting()
            async with self.progress.ticking(self.reading, self.options.duration_s):
                schedule = await pacing.run(
                    self.operation,
                    rate=self.rate,
                    duration_s=self.options.duration_s,
                    concurrency=self.options.concurrency,
                    drain_s=self.op_timeout_s() + DRAIN_MARGIN_S,
                )
            await self.load_stopped()
            processes = meter.stop()
            phases["load_s"] = round(schedule.elapsed_s, 3)
            t = time.monotonic()
            checks = await self.settle()
            phases["settle_s"] = round(time.monotonic() - t, 3)
        finally:
            await self.teardown()
        return report.build(
            service=self.service,
            transport=self.transport,
            scenario=self.scenario(),
            options=self.options,
            target=self.target,
            config=self.config(),
            schedule=schedule,
            tallies=self.tallies,
            checks=checks,
            processes=processes,
            phases=phases,
        )
