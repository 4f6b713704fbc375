"""CPU pinning for benchmarks: the load client on its own CPUs, the system under test on others.

Linux only. An affinity belongs to a thread, not a process: os.sched_setaffinity(pid) sets it
for the thread whose id is `pid`, so a process is pinned by setting it for every thread in
/proc/<pid>/task. Threads and processes started later inherit their creator's affinity, so
once a server and its threads are pinned, what it forks or spawns afterwards (PostgreSQL's
backends, a Go runtime's new threads) stays on the same CPUs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")


def parse_cpus(text: str) -> set[int]:
    """`0`, `1,3` or `0-2,5` (the taskset -c / cpuset notation) as a set of CPU numbers."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"not a CPU list: {text!r}") from None
        if first < 0 or last < first:
            raise ValueError(f"not a CPU list: {text!r}")
        cpus.update(range(first, last + 1))
    if not cpus:
        raise ValueError(f"not a CPU list: {text!r}")
    return cpus


def format_cpus(cpus: Iterable[int]) -> str:
    """The inverse of parse_cpus, with ranges: {0, 1, 2, 5} -> `0-2,5`."""
    out: list[str] = []
    run: list[int] = []
    for cpu in sorted(set(cpus)):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [cpu]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def threads(pid: int) -> list[int]:
    """Thread ids of `pid` (the process itself first); empty when it is gone."""
    try:
        tids = sorted(int(name) for name in os.listdir(PROC / str(pid) / "task"))
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return []
    return sorted(tids, key=lambda tid: tid != pid)


def children(pid: int) -> list[int]:
    """Direct children of `pid`: /proc/<pid>/task/<tid>/children of each thread (a child
    belongs to the thread that forked it), or the parent ids in /proc/*/stat when the kernel
    has no `children` files (CONFIG_PROC_CHILDREN off)."""
    found: list[int] = []
    task_dir = PROC / str(pid) / "task"
    try:
        tids = os.listdir(task_dir)
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return []
    if not tids:
        return []
    if not (task_dir / tids[0] / "children").exists():
        return _children_by_stat(pid)
    for tid in tids:
        try:
            text = (task_dir / tid / "children").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        found.extend(int(word) for word in text.split())
    return found


def _children_by_stat(pid: int) -> list[int]:
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def process_tree(roots: Iterable[int]) -> list[int]:
    """Each root and all its descendants, parents before children, each once."""
    out: list[int] = []
    seen: set[int] = set()
    stack = list(roots)[::-1]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        out.append(pid)
        stack.extend(reversed(children(pid)))
    return out


def pin_process(pid: int, cpus: set[int]) -> tuple[int, int]:
    """Set the affinity of every thread of `pid` to `cpus`; returns (threads pinned,
    threads that could not be: ended meanwhile, or not ours to change)."""
    pinned = failed = 0
    for tid in threads(pid):
        try:
            os.sched_setaffinity(tid, cpus)
            pinned += 1
        except (ProcessLookupError, PermissionError):
            failed += 1
    return pinned, failed


def pin_tree(roots: Iterable[int], cpus: set[int]) -> dict[str, object]:
    """Pin the roots, their descendants and all their threads to `cpus`.

    Run it again after the tree has grown: new processes and threads inherit the affinity of
    their creator, so it finds nothing to move then unless something was started before the
    first call reached its parent.
    """
    processes = threads_pinned = failed = 0
    for pid in process_tree(roots):
        pinned, not_pinned = pin_process(pid, cpus)
        processes += 1 if pinned else 0
        threads_pinned += pinned
        failed += not_pinned
    return {
        "cpus": format_cpus(cpus),
        "processes": processes,
        "threads": threads_pinned,
        "failed": failed,
    }


def pin_self(cpus: set[int]) -> None:
    """This process, every thread of it, on `cpus` (os.sched_setaffinity(0) alone would move
    only the calling thread)."""
    pin_process(os.getpid(), cpus)


def affinity(pid: int) -> str | None:
    """The CPUs `pid` (its main thread) may run on, as `0-1`; None when it is gone."""
    try:
        return format_cpus(os.sched_getaffinity(pid))
    except (ProcessLookupError, PermissionError, OSError):
        return None
