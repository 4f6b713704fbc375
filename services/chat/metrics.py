"""The chat service's metrics (STYLE.md point 10), beside the shared command metrics:

- `sharetube_chat_messages_total{code}` (counter): `chat.send` by outcome code (`ok`,
  `rate_limited`, ...).
- `sharetube_chat_deletions_total{code}` (counter): `chat.delete` by outcome code.
"""

from prometheus_client import Counter

from services.common.bus import CommandRouter

MESSAGES = Counter("sharetube_chat_messages_total", "Chat messages sent, by outcome", ["code"])
DELETIONS = Counter("sharetube_chat_deletions_total", "Chat deletions, by outcome", ["code"])


def attach(router: CommandRouter) -> None:
    def observe(command: str, code: str) -> None:
        if command == "send":
            MESSAGES.labels(code).inc()
        elif command == "delete":
            DELETIONS.labels(code).inc()

    router.observe(observe)
