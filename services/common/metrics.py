"""Metrics every service shares (STYLE.md point 10); each service adds its own in its
`metrics.py`. Labels come from templates (service, command type, subject template), never
room codes or user ids.

- `sharetube_commands_total{service, command, code}` (counter): commands served, by outcome
  (`ok` or the error code).
- `sharetube_command_duration_seconds{service, command}` (histogram): handling time.
- `sharetube_bus_request_duration_seconds{subject, outcome}` (histogram): NATS request
  latency seen by the caller; outcome `ok`, `timeout`, `unavailable`.
- `sharetube_db_query_duration_seconds{operation}` (histogram): one SQL statement's time
  (operation = the statement's first keyword).
- `sharetube_nats_errors_total{kind}` (counter): nats-py errors, `slow_consumer` among them.
- `sharetube_gc_pause_seconds{generation}` (histogram): how long each garbage collection held
  the process (services/common/gcpause.py); a full one stops every socket and command.
"""

import time
from typing import Any

from prometheus_client import Counter, Histogram
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from . import tracing

# From a cached read (~1 ms) to a command stuck behind a lock near the bus timeout (3 s).
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

COMMANDS = Counter(
    "sharetube_commands_total", "Commands served, by outcome code", ["service", "command", "code"]
)
COMMAND_DURATION = Histogram(
    "sharetube_command_duration_seconds",
    "Time to handle one command",
    ["service", "command"],
    buckets=_LATENCY_BUCKETS,
)
BUS_REQUEST_DURATION = Histogram(
    "sharetube_bus_request_duration_seconds",
    "NATS request latency, by subject template and outcome",
    ["subject", "outcome"],
    buckets=_LATENCY_BUCKETS,
)
DB_QUERY_DURATION = Histogram(
    "sharetube_db_query_duration_seconds",
    "Time of one SQL statement",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
)
# From a young collection (~0.1 ms) to a full one over a gateway's sockets (tens of ms).
GC_PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5)
GC_PAUSE = Histogram(
    "sharetube_gc_pause_seconds",
    "Time one garbage collection held the process, by generation",
    ["generation"],
    buckets=GC_PAUSE_BUCKETS,
)
NATS_ERRORS = Counter("sharetube_nats_errors_total", "nats-py errors by kind", ["kind"])

_OPERATIONS = frozenset({"select", "insert", "update", "delete", "begin", "commit", "rollback"})


def instrument_engine(engine: AsyncEngine) -> None:
    """Time every statement through SQLAlchemy's cursor events."""

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before(conn: Any, _cursor: Any, _statement: str, *_args: Any) -> None:
        conn.info.setdefault("_st_started", []).append((time.perf_counter(), time.time_ns()))

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def _after(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        started = conn.info.get("_st_started")
        if not started:
            return
        head = statement.lstrip().split(None, 1)
        operation = head[0].lower() if head else "other"
        operation = operation if operation in _OPERATIONS else "other"
        perf_started, wall_started_ns = started.pop()
        DB_QUERY_DURATION.labels(operation).observe(time.perf_counter() - perf_started)
        # The span is made after the fact: the statement's own start and end.
        span = tracing.tracer.start_span(
            f"db {operation}", start_time=wall_started_ns, attributes={"db.operation": operation}
        )
        span.end()
