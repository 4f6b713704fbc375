"""The queue service's metrics (STYLE.md point 10), beside the shared command metrics:

- `sharetube_queue_changes_total{command, code}` (counter): add, remove, move, shuffle,
  advance by outcome code.
- `sharetube_queue_snapshot_batch_size` (histogram): joins' queue reads answered by one
  statement (services/common/batchedreads.py).
"""

from prometheus_client import Counter, Histogram

from services.common.batchedreads import BATCH_BUCKETS
from services.common.bus import CommandRouter

CHANGES = Counter(
    "sharetube_queue_changes_total", "Queue changes by command and outcome", ["command", "code"]
)

SNAPSHOT_BATCH_SIZE = Histogram(
    "sharetube_queue_snapshot_batch_size",
    "Snapshots' queue reads (queue.load) answered by one statement",
    buckets=BATCH_BUCKETS,
)

_CHANGES = frozenset({"add", "remove", "move", "shuffle", "advance"})


def attach(router: CommandRouter) -> None:
    def observe(command: str, code: str) -> None:
        if command in _CHANGES:
            CHANGES.labels(command, code).inc()

    router.observe(observe)
