"""scripts/fanout.py's own logic: the per-member sequence check, `v` read from a frame's
head, and the command line (several gateways, CPU lists)."""

import orjson
import pytest

from scripts import fanout


def event(kind: str, v: int, data: object = None) -> bytes:
    return orjson.dumps({"type": kind, "room": "AbC123", "v": v, "data": data or {}})


@pytest.fixture
def bench():
    b = fanout.Bench(["http://127.0.0.1:1"], 2, fanout.Progress(quiet=True))
    yield b
    b.client.shutdown()


def test_v_is_read_from_the_head_of_an_event() -> None:
    assert fanout.event_v(event("members", 1234, [{"id": "u"}] * 50)[:64]) == 1234
    assert fanout.event_v(b'{"re":"m1-1","ok":true,"data":{}}') is None
    assert fanout.event_v(b'{"type":"members","room":"AbC123","v":12') is None  # cut short


def test_events_after_the_snapshot_must_follow_it_without_gaps_or_steps_back(bench) -> None:
    m = bench.members[1]
    bench.on_text(m, event("members", 7), 0)  # before any snapshot: only counted
    bench._snapshot(m, 10)
    for v in (9, 10):  # held while the snapshot was read: already in it
        bench.on_text(m, event("settings", v, {"name": "x"}), 0)
    bench.on_text(m, event("playback", 11, {"status": "paused"}), 0)
    bench.on_text(m, event("queue", 13), 0)  # 12 never came
    bench.on_text(m, event("chat", 12), 0)  # and then it does, too late
    bench.on_text(m, event("chat", 10), 0)  # below the snapshot, after newer ones
    assert (m.pre_snapshot, m.covered, m.lost, m.reordered, m.last_v) == (1, 2, 1, 2, 13)
    out = bench.sequences(final=True)
    assert (out["lost"], out["reordered"], out["members_with_gaps"]) == (1, 2, 1)
    assert out["same_sequence"] is False


def test_a_large_member_list_is_checked_from_its_head_alone(bench) -> None:
    m = bench.members[0]
    bench._snapshot(m, 3)
    frame = event("members", 4, [{"id": "u" * 30}] * 200)
    assert bench.on_head(m, frame[:128], len(frame), 0) is True
    assert bench.on_head(m, event("playback", 5)[:128], 5000, 0) is False
    assert (m.last_v, m.lost, bench.members_frames, bench.members_bytes) == (4, 0, 1, len(frame))


def test_several_gateways_by_repeating_url_or_a_comma_list() -> None:
    args = fanout.parse_args(
        ["--url", "http://127.0.0.1:8001,http://127.0.0.1:8002/", "--url", "http://h:8003"]
    )
    assert args.urls == ["http://127.0.0.1:8001", "http://127.0.0.1:8002", "http://h:8003"]
    args = fanout.parse_args(["--url", "http://a:1,http://b:2", "--gateway-pid", "10,11"])
    assert args.gateway_pids == [10, 11]
    assert fanout.parse_args([]).urls == ["http://127.0.0.1:8000"]
    bench = fanout.Bench(["http://a:1", "http://b:2"], 5, fanout.Progress(quiet=True))
    assert [m.gw for m in bench.members] == [0, 1, 0, 1, 0]
    bench.client.shutdown()


@pytest.mark.parametrize(
    "argv",
    [
        ["--url", "https://a:1"],  # no TLS in the client
        ["--url", "http://a:1", "--gateway-pid", "1,2"],  # more PIDs than gateways
        ["--stack-cpus", "0"],  # only a system --start runs is pinned
        ["--client-cpus", "9999"],
        ["--client-cpus", "x"],
    ],
)
def test_bad_command_lines_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        fanout.parse_args(argv)
