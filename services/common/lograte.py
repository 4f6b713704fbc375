"""Warnings that a burst would repeat thousands of times, written at most once an interval.

A gateway closing 2,000 sockets at once makes rooms serve 2,000 disconnects, many past the
slow mark; a bus outage times out every request in flight. One line a second, saying how many
it stands for, tells the operator as much and keeps the log readable.
"""

import logging
import time
from collections.abc import Callable
from typing import Any


class Sparse:
    """`warning` for `logger`, at most once every `interval_s`; the lines held back meanwhile
    are counted into the next one written."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last = float("-inf")
        self._held = 0

    def warning(self, message: str, *args: Any) -> None:
        now = self._clock()
        if now - self._last < self._interval_s:
            self._held += 1
            return
        if self._held:
            message += " (and %d more like it since the last)"
            args = (*args, self._held)
        self._logger.warning(message, *args)
        self._last = now
        self._held = 0
