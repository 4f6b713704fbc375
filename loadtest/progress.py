"""The line on stderr while a driver runs: rate, p99 so far, errors, lost, elapsed."""

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

# A terminal gets the line rewritten every second; a log file one line every five.
TTY_EVERY_S = 1.0
LOG_EVERY_S = 5.0


@dataclass(frozen=True)
class Reading:
    ops: int
    p99_ms: float | None
    errors: int
    lost: int


class Progress:
    def __init__(self, label: str, quiet: bool = False) -> None:
        self.label = label
        self.quiet = quiet
        self.tty = sys.stderr.isatty()

    def note(self, text: str) -> None:
        if not self.quiet:
            sys.stderr.write(("\r\x1b[2K" if self.tty else "") + f"[{self.label}] {text}\n")
            sys.stderr.flush()

    @contextlib.asynccontextmanager
    async def ticking(self, read: Callable[[], Reading], duration_s: float) -> AsyncIterator[None]:
        """Show `read()` periodically until the block ends, then once more."""
        started = time.monotonic()
        task = None if self.quiet else asyncio.create_task(self._tick(read, started, duration_s))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                self._show(read(), started, duration_s, final=True)

    async def _tick(self, read: Callable[[], Reading], started: float, duration_s: float) -> None:
        every = TTY_EVERY_S if self.tty else LOG_EVERY_S
        while True:
            await asyncio.sleep(every)
            self._show(read(), started, duration_s)

    def _show(self, r: Reading, started: float, duration_s: float, final: bool = False) -> None:
        elapsed = time.monotonic() - started
        p99 = f"{r.p99_ms:8.2f} ms" if r.p99_ms is not None else f"{'-':>8} ms"
        text = (
            f"[{self.label}] {r.ops:8d} ops {r.ops / max(elapsed, 1e-9):9.1f}/s  p99 {p99}  "
            f"errors {r.errors}  lost {r.lost}  {elapsed:6.1f}/{duration_s:.0f} s"
        )
        if self.tty:
            sys.stderr.write(f"\r\x1b[2K{text}" + ("\n" if final else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()
