"""scripts/sendfloor.py: every round reaches every socket and is timed by the kernel's stamp."""

from scripts.sendfloor import measure_send_floor


def test_each_round_is_timed_to_the_last_socket() -> None:
    result = measure_send_floor(clients=20, rounds=3, stack_cpus=None, client_cpus=None)
    assert result["ok"] is True
    assert result["rounds"] == 3
    last = result["to_last_socket_ms"]
    assert last["count"] == 3
    assert 0 < last["p50"] <= last["max"] < 5_000
    assert result["per_socket_us"] > 0


def test_the_sender_uses_the_congestion_control_asked_for() -> None:
    default = measure_send_floor(clients=4, rounds=1, stack_cpus=None, client_cpus=None)
    with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
        assert default["congestion"] == f.read().strip()
    other = "reno" if default["congestion"] != "reno" else "cubic"
    asked = measure_send_floor(
        clients=4, rounds=1, stack_cpus=None, client_cpus=None, congestion=other
    )
    assert asked["ok"] is True
    assert asked["congestion"] == other
