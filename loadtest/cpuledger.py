"""Who ran on the stack's CPUs while one round was timed, to the microsecond.

The scheduler keeps every thread's run time in nanoseconds (`/proc/<pid>/task/<tid>/schedstat`,
first field). Two snapshots around a round, summed by process, say what that core did in it: a
slow round beside a process that ran far longer than in a typical round (PostgreSQL's
autovacuum, the janitor, some other program on the machine) is that process's, not the
fan-out's. psutil's CPU times (procstats.py) count in clock ticks of 4-10 ms, coarser than a
round.

    ledger = CpuLedger(cpus={0}, names={gateway_pid: "gateway"})
    before = ledger.snapshot()
    ...  # the round
    spent = ledger.spent(before, ledger.snapshot())  # {"gateway": 7.9, "postgres: ...": 0.6}

Threads are read where they can run: those whose affinity meets `cpus` (all, without it). A
process is named by `names` (the stack's services), else by its title (PostgreSQL shows
`postgres: autovacuum worker`, `postgres: walwriter` there), else by its command name. This
process is left out: it is the client, on CPUs of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from scripts.pinning import threads

PROC = "/proc"
TITLE_WORDS = 3  # "postgres: autovacuum worker"; a backend's "postgres: user db ..." is cut


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)


def run_time_ns(pid: int, tid: int) -> int | None:
    """The thread's run time so far (ns); None once it is gone."""
    raw = _read(f"{PROC}/{pid}/task/{tid}/schedstat")
    if not raw:
        return None
    try:
        return int(raw.split(None, 1)[0])
    except ValueError:
        return None


def process_title(pid: int) -> str | None:
    """What the process shows as its command line, cut to TITLE_WORDS words."""
    raw = _read(f"{PROC}/{pid}/cmdline")
    if not raw:
        comm = _read(f"{PROC}/{pid}/comm")
        return comm.decode(errors="replace").strip() if comm else None
    words = raw.replace(b"\0", b" ").decode(errors="replace").split()
    if not words:
        return None
    words[0] = os.path.basename(words[0])
    return " ".join(words[:TITLE_WORDS])


class CpuLedger:
    def __init__(self, cpus: Iterable[int] | None = None, names: dict[int, str] | None = None):
        self.cpus = set(cpus) if cpus else None
        self.names = dict(names or {})
        self._own = os.getpid()
        self._allowed: dict[int, bool] = {}  # tid -> whether it may run on `cpus`
        self._known: dict[int, str] = {}  # pid -> name, read once

    def _pids(self) -> list[int]:
        try:
            return [int(entry) for entry in os.listdir(PROC) if entry.isdigit()]
        except OSError:
            return []

    def _on_cpus(self, pid: int) -> list[int]:
        """The threads of `pid` that may run on `cpus`. Listed anew at every snapshot (a
        server may start threads while it runs); each thread's affinity is read once (it
        inherits its creator's, and the stack is pinned before the rounds)."""
        tids = threads(pid)
        if self.cpus is None:
            return tids
        kept = []
        for tid in tids:
            allowed = self._allowed.get(tid)
            if allowed is None:
                try:
                    allowed = bool(os.sched_getaffinity(tid) & self.cpus)
                except OSError:
                    continue
                self._allowed[tid] = allowed
            if allowed:
                kept.append(tid)
        return kept

    def name_of(self, pid: int) -> str:
        name = self.names.get(pid) or self._known.get(pid)
        if name is None:
            name = self._known[pid] = process_title(pid) or f"pid {pid}"
        return name

    def snapshot(self) -> dict[tuple[int, int], int]:
        """(pid, tid) -> run time in ns, for every thread that may run on `cpus`."""
        times: dict[tuple[int, int], int] = {}
        for pid in self._pids():
            if pid == self._own:
                continue
            for tid in self._on_cpus(pid):
                ns = run_time_ns(pid, tid)
                if ns is not None:
                    times[(pid, tid)] = ns
        return times

    def spent(
        self, before: dict[tuple[int, int], int], after: dict[tuple[int, int], int]
    ) -> dict[str, float]:
        """Milliseconds each process ran between two snapshots, by name, most first. A
        thread born in between counts from zero; one gone in between is not seen."""
        by_name: dict[str, int] = {}
        for key, ns in after.items():
            used = ns - before.get(key, 0)
            if used > 0:
                name = self.name_of(key[0])
                by_name[name] = by_name.get(name, 0) + used
        return {
            name: round(ns / 1e6, 3)
            for name, ns in sorted(by_name.items(), key=lambda item: item[1], reverse=True)
        }


def typical(per_round: list[dict[str, float]]) -> dict[str, float]:
    """Each process's median milliseconds over the rounds (0 in a round it did not run);
    processes whose median is 0 (they ran in few rounds) are left out."""
    names = {name for spent in per_round for name in spent}
    out: dict[str, float] = {}
    for name in names:
        values = sorted(spent.get(name, 0.0) for spent in per_round)
        if values and values[len(values) // 2] > 0:
            out[name] = values[len(values) // 2]
    return dict(sorted(out.items(), key=lambda item: item[1], reverse=True))


NOTABLE_MS = 0.05  # less over a typical round than this is nothing unusual


def unusual(spent: dict[str, float], usual: dict[str, float], top: int = 3) -> dict[str, float]:
    """What ran longer in one round than in a typical one (ms over the median), most first.
    Empty when nothing did: the round was slow without more work on the stack's CPUs (the
    client's side, or the host holding the virtual CPU back)."""
    over = {name: round(ms - usual.get(name, 0.0), 3) for name, ms in spent.items()}
    ranked = sorted(((n, ms) for n, ms in over.items() if ms >= NOTABLE_MS), key=lambda x: -x[1])
    return dict(ranked[:top])


def describe_slowest(report: dict | None, top: int = 3) -> str | None:
    """One line for a fan-out report's `cpu_during_rounds`: each slowest round, its time and
    what ran longer in it than in a typical round."""
    if not report or not report.get("slowest_rounds"):
        return None
    parts = []
    for row in report["slowest_rounds"][:top]:
        over = ", ".join(f"{name} +{ms:.1f}" for name, ms in row["over_typical_ms"].items())
        parts.append(f"#{row['round']} {row['to_last_ms']:.1f} ms ({over or 'nothing unusual'})")
    return "slowest rounds, ms over a typical round: " + "; ".join(parts)
