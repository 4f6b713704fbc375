"""A failed test run keeps the logs of the stacks it started (services, NATS, PostgreSQL;
copied to KEPT by loadtest.stack.keep_logs), which otherwise go with the session's temporary
folder, and shows their errors in the terminal summary: CI keeps only what the run printed, and a failure seen once in CI is
explained by them (tests/conftest.py)."""

import re
from pathlib import Path

KEPT = Path(__file__).resolve().parents[2] / ".artifacts" / "test-logs"
# A log line worth showing: a level of ERROR or worse, or a traceback.
NOTABLE = re.compile(r"\b(ERROR|CRITICAL|FATAL|PANIC|Traceback)\b")
MAX_LINES = 200  # of the summary: bounded, however many errors a broken run logged


def notable_lines(logs: list[Path], root: Path = KEPT, limit: int = MAX_LINES) -> list[str]:
    """`file: line` for each notable line of `logs`, in file order, at most `limit`."""
    found: list[str] = []
    for log in logs:
        name = log.relative_to(root) if log.is_relative_to(root) else log
        with log.open(errors="replace") as lines:
            for line in lines:
                if NOTABLE.search(line):
                    found.append(f"{name}: {line.rstrip()[:300]}")
                    if len(found) >= limit:
                        return found
    return found
