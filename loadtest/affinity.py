"""Where the stack and this process run. scripts/pinning.py does the pinning (every thread of
every process of a tree, walked through /proc; what starts later inherits its creator's
CPUs); this adds the check at the end of a run that no thread strayed from its CPUs."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.pinning import parse_cpus, pin_self, pin_tree, process_tree, threads  # noqa: E402

__all__ = ["audit", "parse_cpus", "pin_self", "pin_tree"]


def audit(pids: dict[str, int], cpus: set[int], trees: bool = True) -> dict[str, object]:
    """How many threads these processes (with their descendants: `trees`) have, and which
    ones may run outside `cpus`."""
    count = 0
    stray: list[str] = []
    for name, pid in pids.items():
        for proc in process_tree([pid]) if trees else [pid]:
            for tid in threads(proc):
                try:
                    allowed = os.sched_getaffinity(tid)
                except OSError:
                    continue  # ended meanwhile
                count += 1
                if not allowed <= cpus:
                    stray.append(f"{name}:{proc}/{tid} on {sorted(allowed)}")
    return {"threads": count, "outside": len(stray), "examples": stray[:10]}
