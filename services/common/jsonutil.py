import time
from typing import Any

import orjson

loads = orjson.loads


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def now_ms() -> int:
    """Wall-clock milliseconds: the shared time base of every playback anchor."""
    return time.time_ns() // 1_000_000
