"""The entry point for programs (the benchmark orchestrator): run one driver against one
running stack and get its report. Several drivers may run one after another against the same
Target."""

from typing import Any

from .drivers.auth import AuthDriver
from .drivers.base import Driver
from .drivers.chat import ChatDriver
from .drivers.gateway import GatewayDriver
from .drivers.queue import QueueDriver
from .drivers.rooms import RoomsDriver
from .options import LoadOptions, Target

DRIVERS: dict[str, type[Driver]] = {
    "gateway": GatewayDriver,
    "rooms": RoomsDriver,
    "queue": QueueDriver,
    "chat": ChatDriver,
    "auth": AuthDriver,
}


async def run_driver(service: str, options: LoadOptions, target: Target) -> dict[str, Any]:
    """The JSON report (loadtest/report.py); raises LoadError when the run could not happen."""
    try:
        driver = DRIVERS[service]
    except KeyError:
        raise ValueError(f"no load driver for {service!r}; one of {sorted(DRIVERS)}") from None
    return await driver(options, target).run()
