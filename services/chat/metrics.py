"""The chat service's metrics (STYLE.md point 10), beside the shared command metrics:

- `sharetube_chat_messages_total{code}` (counter): `chat.send` by outcome code (`ok`,
  `rate_limited`, ...).
- `sharetube_chat_deletions_total{code}` (counter): `chat.delete` by outcome code.
- `sharetube_chat_history_batch_size` (histogram): history pages (every join's chat part)
  read by one statement (services/common/batchedreads.py).
"""

from prometheus_client import Counter, Histogram

from services.common.batchedreads import BATCH_BUCKETS
from services.common.bus import CommandRouter

MESSAGES = Counter("sharetube_chat_messages_total", "Chat messages sent, by outcome", ["code"])
DELETIONS = Counter("sharetube_chat_deletions_total", "Chat deletions, by outcome", ["code"])
HISTORY_BATCH_SIZE = Histogram(
    "sharetube_chat_history_batch_size",
    "History pages (chat.history) read by one statement",
    buckets=BATCH_BUCKETS,
)


def attach(router: CommandRouter) -> None:
    def observe(command: str, code: str) -> None:
        if command == "send":
            MESSAGES.labels(code).inc()
        elif command == "delete":
            DELETIONS.labels(code).inc()

    router.observe(observe)
