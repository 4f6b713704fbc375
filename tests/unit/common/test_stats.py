"""The figures behind GET /api/stats: the per-second meter and the summary of replies."""

from services.common.contracts.envelope import StatsReply
from services.common.stats import RateMeter, summarize


class Clock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_rate_meter_averages_the_last_whole_seconds() -> None:
    clock = Clock()
    meter = RateMeter(window_s=10, clock=clock)
    assert meter.per_second() == 0
    for second in range(10):
        clock.t = 1_000.0 + second + 0.5
        meter.mark(3)
    clock.t = 1_010.2  # the 10 full seconds before now hold 30 marks
    assert meter.per_second() == 3.0
    meter.mark(100)  # the current, partial second does not count yet
    assert meter.per_second() == 3.0


def test_rate_meter_forgets_old_seconds_and_reuses_slots() -> None:
    clock = Clock()
    meter = RateMeter(window_s=2, clock=clock)
    meter.mark(10)
    clock.t += 1
    assert meter.per_second() == 5.0
    clock.t += 5  # long idle: nothing in the window
    assert meter.per_second() == 0
    meter.mark(4)  # lands in a slot used before: its old count is dropped
    clock.t += 1
    assert meter.per_second() == 2.0


def _reply(service: str, instance: str, **figures: dict[str, float]) -> StatsReply:
    return StatsReply(service=service, instance=instance, **figures)


def test_summarize_adds_process_figures_and_counts_shared_ones_once() -> None:
    replies = [
        _reply("gateway", "gw-a", process={"connections": 3, "rooms": 2, "messages_per_s": 1.5}),
        _reply("gateway", "gw-b", process={"connections": 4, "rooms": 1, "messages_per_s": 2.0}),
        _reply(
            "rooms",
            "r-1",
            process={"messages_per_s": 1.0},
            shared={"rooms": 2, "rooms_total": 9, "users_online": 6},
        ),
        _reply(
            "rooms",
            "r-2",
            process={"messages_per_s": 2.0},
            shared={"rooms": 3, "rooms_total": 9, "users_online": 7},
        ),
        _reply("queue", "q-1", process={"messages_per_s": 0.5}),
    ]
    summary = summarize(replies, 0.3)
    assert summary["connections"] == 7
    assert summary["messages_per_s"] == 3.5
    assert (summary["rooms"], summary["rooms_total"], summary["users_online"]) == (3, 9, 7)
    assert summary["gateways"] == {
        "gw-a": {"connections": 3, "rooms": 2, "messages_per_s": 1.5},
        "gw-b": {"connections": 4, "rooms": 1, "messages_per_s": 2.0},
    }
    services = summary["services"]
    assert isinstance(services, dict)
    assert services["rooms"] == {
        "replicas": 2,
        "messages_per_s": 3.0,
        "rooms": 3,
        "rooms_total": 9,
        "users_online": 7,
    }
    assert services["queue"] == {"replicas": 1, "messages_per_s": 0.5}
    assert summary["window_ms"] == 300


def test_summarize_with_no_replies_is_all_zero() -> None:
    summary = summarize([], 0.3)
    assert summary["rooms"] == summary["connections"] == summary["users_online"] == 0
    assert summary["gateways"] == {} and summary["services"] == {}
