"""The queue service's metrics (STYLE.md point 10), beside the shared command metrics:

- `sharetube_queue_changes_total{command, code}` (counter): add, remove, move, shuffle,
  advance by outcome code.
"""

from prometheus_client import Counter

from services.common.bus import CommandRouter

CHANGES = Counter(
    "sharetube_queue_changes_total", "Queue changes by command and outcome", ["command", "code"]
)

_CHANGES = frozenset({"add", "remove", "move", "shuffle", "advance"})


def attach(router: CommandRouter) -> None:
    def observe(command: str, code: str) -> None:
        if command in _CHANGES:
            CHANGES.labels(command, code).inc()

    router.observe(observe)
