"""A burst of the same warning is written once an interval, counting what it held back."""

import logging

import pytest

from services.common.lograte import Sparse


def test_a_burst_is_one_line_and_the_next_line_counts_what_was_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [100.0]
    sparse = Sparse(logging.getLogger("sparse-test"), interval_s=1.0, clock=lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="sparse-test"):
        for n in range(5):  # within one second: the first is written
            sparse.warning("slow command %s", n)
            clock[0] += 0.1
        clock[0] += 1.0
        sparse.warning("slow command %s", "late")
        clock[0] += 1.5
        sparse.warning("slow command %s", "alone")
    assert [r.getMessage() for r in caplog.records] == [
        "slow command 0",
        "slow command late (and 4 more like it since the last)",
        "slow command alone",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
