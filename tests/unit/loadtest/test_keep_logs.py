"""A failed benchmark section keeps the stack's logs (the stack's folder goes when it stops):
every *.log under it, by its relative path, and not the database."""

import argparse
from pathlib import Path

import pytest

from loadtest.options import Target
from loadtest.stack import keep_logs
from scripts import bench


def stack_folder(root: Path) -> Path:
    (root / "logs").mkdir(parents=True)
    (root / "logs" / "rooms.log").write_text("rooms: join timed out\n")
    (root / "postgres" / "data").mkdir(parents=True)
    (root / "postgres" / "postgres.log").write_text("checkpoint\n")
    (root / "postgres" / "data" / "base.dat").write_bytes(b"\0" * 64)
    return root


def test_keep_logs_copies_the_logs_only(tmp_path: Path) -> None:
    root = stack_folder(tmp_path / "stack")
    dest = tmp_path / "kept"
    (dest / "stale.log").parent.mkdir(parents=True)
    (dest / "stale.log").write_text("from an earlier run")
    kept = keep_logs(root, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in kept) == [
        "logs/rooms.log",
        "postgres/postgres.log",
    ]
    assert (dest / "logs" / "rooms.log").read_text() == "rooms: join timed out\n"
    assert not (dest / "postgres" / "data").exists()
    assert not (dest / "stale.log").exists()  # a rerun's logs are not mixed with older ones


def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bench.Suite:
    args = bench.parse_args(["--size", "tiny", "--out", str(tmp_path / "out" / "report.json")])
    args.quiet = True
    monkeypatch.setattr(bench.Suite, "_quiesce", lambda self: 0.0)
    return bench.Suite(argparse.Namespace(**vars(args)))


def test_a_failed_section_keeps_the_stacks_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = suite(tmp_path, monkeypatch)
    s._target = Target(
        ("http://127.0.0.1:1",), "nats://127.0.0.1:1", log_dir=stack_folder(tmp_path / "stack")
    )

    def fails() -> dict[str, object]:
        raise RuntimeError("join answered timeout")

    s._section("many_rooms", fails)
    s._section("service_rooms", lambda: {"ok": True})
    sections = s.report["sections"]
    kept = Path(sections["many_rooms"]["logs"])
    assert kept == tmp_path / "out" / "logs" / "many_rooms"
    assert (kept / "logs" / "rooms.log").read_text() == "rooms: join timed out\n"
    assert "logs" not in sections["service_rooms"]
    assert not (tmp_path / "out" / "logs" / "service_rooms").exists()
