"""scripts/bench.py's table: each fan-out row shows the send floor taken before the stacks and
after them (this VM's speed moves within a run), and "-" for a floor not taken."""

from scripts.bench import render


def floor(p50: float) -> dict[str, object]:
    return {"ok": True, "to_last_socket_ms": {"p50": p50}}


def fanout(p50: float) -> dict[str, object]:
    return {"ok": True, "to_last_member_ms": {"p50": p50}, "sequence": {"lost": 0}}


def test_a_fanout_row_shows_the_floor_before_and_after() -> None:
    report = {
        "size": "full",
        "pinning": {},
        "sections": {
            "floor_1000": floor(5.66),
            "fanout_1000": fanout(12.32),
            "scale_out_fanout": fanout(11.32),
            "floor_1000_end": floor(8.1),
        },
    }
    table = render(report)
    (row,) = [line for line in table.splitlines() if line.strip().startswith("N=1000")]
    assert "12.32" in row and "5.66/8.10" in row
    (scaled,) = [line for line in table.splitlines() if "2 gateways" in line]
    assert "-/-" in scaled


def test_a_floor_not_taken_is_a_dash() -> None:
    report = {
        "size": "tiny",
        "pinning": {},
        "sections": {"floor_10": floor(0.2), "fanout_10": fanout(3.0)},
    }
    (row,) = [line for line in render(report).splitlines() if line.strip().startswith("N=10")]
    assert "0.20/-" in row
