"""CPU time and memory of the target's processes over the measured phase, and of this one.

CPU is summed over each process's tree: PostgreSQL's work is done by the postmaster's
backends, not by the postmaster. `cpu_pct` is of one core (200 = two cores busy). `rss_mb`
adds each process's resident set, so pages shared by a tree (PostgreSQL's shared buffers)
count once per process that touched them.
"""

import contextlib
import os
import time
from typing import Any

import psutil

SELF = "loadtest (this process)"


def _tree(pid: int, children: bool = True) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)] if children else [root]
    except psutil.Error:
        return []


def _cpu(proc: psutil.Process) -> float | None:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


class ProcessMeter:
    def __init__(self, pids: dict[str, int]) -> None:
        # This process without its children: with --start, those are the stack.
        self.pids = {**pids, SELF: os.getpid()}
        self._start: dict[str, dict[int, float]] = {}
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        for name, pid in self.pids.items():
            self._start[name] = {p.pid: cpu for p in _tree(pid) if (cpu := _cpu(p)) is not None}

    def stop(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        out: dict[str, Any] = {}
        for name, pid in self.pids.items():
            before = self._start.get(name, {})
            used = 0.0
            rss = 0
            procs = _tree(pid, children=name != SELF)
            for proc in procs:
                cpu = _cpu(proc)
                if cpu is not None:
                    used += cpu - before.get(proc.pid, 0.0)
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
            if not procs:
                out[name] = {"pid": pid, "gone": True}
                continue
            out[name] = {
                "pid": pid,
                "processes": len(procs),
                "cpu_s": round(used, 3),
                "cpu_pct": round(100 * used / elapsed, 1),
                "rss_mb": round(rss / 2**20, 1),
            }
        return out
