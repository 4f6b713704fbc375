"""The errors a failed run shows from the logs it kept (tests/support/kept_logs.py)."""

from pathlib import Path

from loadtest.stack import keep_logs
from tests.support import kept_logs


def test_errors_and_tracebacks_are_shown_bounded_and_nothing_else(tmp_path: Path) -> None:
    stack = tmp_path / "stack"
    (stack / "logs-main").mkdir(parents=True)
    (stack / "logs-main" / "gateway-0.log").write_text(
        "2026-11-25 INFO gateway ready\n"
        "2026-11-25 ERROR frame join failed\n"
        "Traceback (most recent call last):\n"
        "2026-11-25 WARNING slow\n"
    )
    (stack / "pg").mkdir()
    (stack / "pg" / "data.bin").write_bytes(b"\0ERROR")  # not a log: not kept
    dest = tmp_path / "kept"
    kept = keep_logs(stack, dest)
    assert [p.relative_to(dest).as_posix() for p in kept] == ["logs-main/gateway-0.log"]
    assert kept_logs.notable_lines(kept, dest) == [
        "logs-main/gateway-0.log: 2026-11-25 ERROR frame join failed",
        "logs-main/gateway-0.log: Traceback (most recent call last):",
    ]
    assert len(kept_logs.notable_lines(kept, dest, limit=1)) == 1
