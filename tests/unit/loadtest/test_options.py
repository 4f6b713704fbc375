"""The command line: its arguments, replica counts, and the gateway URLs."""

import pytest

from loadtest.cli import parse_args
from loadtest.options import Target
from loadtest.stack import DEFAULT_REPLICAS, parse_replicas


def test_replicas_default_to_one_of_each_but_the_janitor() -> None:
    assert parse_replicas(None) == DEFAULT_REPLICAS
    assert "janitor" not in DEFAULT_REPLICAS
    assert parse_replicas("2") == dict.fromkeys(DEFAULT_REPLICAS, 2)
    assert parse_replicas("rooms=2,gateway=2") == {**DEFAULT_REPLICAS, "rooms": 2, "gateway": 2}
    assert parse_replicas("janitor=1")["janitor"] == 1
    with pytest.raises(ValueError):
        parse_replicas("nosuch=2")


def test_arguments() -> None:
    args = parse_args(["rooms", "--start", "--stack-cpus", "0", "--client-cpus", "1"])
    assert args.stack_cpus == {0} and args.client_cpus == {1}
    assert str(args.out) == ".bench/load-rooms.json"
    with pytest.raises(SystemExit):
        parse_args(["rooms", "--stack-cpus", "0"])  # pinning a stack it did not start
    with pytest.raises(SystemExit):
        parse_args(["rooms", "--start", "--url", "http://127.0.0.1:8000"])
    assert not args.durable  # the tests' fast PostgreSQL unless asked
    assert parse_args(["rooms", "--start", "--durable"]).durable
    with pytest.raises(SystemExit):
        parse_args(["rooms", "--durable"])  # a running stack's database is what it is
    assert not args.reads
    assert parse_args(["chat", "--start", "--reads"]).reads
    with pytest.raises(SystemExit):
        parse_args(["rooms", "--start", "--reads"])  # only the queue and chat have reads


def test_target_derives_websocket_urls() -> None:
    target = Target(("http://127.0.0.1:8000", "https://b.example"), "nats://x:4222")
    assert target.ws_urls == ("ws://127.0.0.1:8000/ws", "wss://b.example/ws")
    assert target.base_url == "http://127.0.0.1:8000"
