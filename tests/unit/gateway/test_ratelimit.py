"""The per-socket token bucket (the per-user one in Redis: tests/integration)."""

from services.gateway.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_full_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=5, burst=10, clock=clock)
    assert all(bucket.take() for _ in range(10))
    assert not bucket.take()
    clock.t += 0.2  # one token back
    assert bucket.take() and not bucket.take()
    clock.t += 100  # never more than the burst
    assert sum(bucket.take() for _ in range(20)) == 10


def test_a_refused_frame_costs_nothing() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.take()
    for _ in range(100):
        assert not bucket.take()
    clock.t += 1
    assert bucket.take()
