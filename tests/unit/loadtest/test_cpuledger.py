"""loadtest/cpuledger.py: what ran on given CPUs between two snapshots, from the
scheduler's real per-thread run times (/proc), named by service or by process title."""

import os
import subprocess
import sys
import time

from loadtest import cpuledger
from loadtest.cpuledger import CpuLedger

SPIN = "import time\ntime.sleep({wait})\nend = time.monotonic() + {spin}\nwhile time.monotonic() < end: pass\n"


def _spinner(wait_s: float, spin_s: float, cpu: int | None = None) -> subprocess.Popen[bytes]:
    """A process that sleeps `wait_s`, then keeps a CPU busy for `spin_s`."""
    proc = subprocess.Popen([sys.executable, "-c", SPIN.format(wait=wait_s, spin=spin_s)])
    if cpu is not None:
        os.sched_setaffinity(proc.pid, {cpu})
    return proc


def _watched(
    proc: subprocess.Popen[bytes], name: str, ready_s: float, ledger: CpuLedger | None = None
) -> tuple[dict[tuple[int, int], int], dict[str, float]]:
    """After `ready_s`, two snapshots 100 ms apart with `proc` named `name`: the first, and
    what each process ran between them. `proc` is killed after."""
    try:
        ledger = ledger or CpuLedger()
        ledger.names[proc.pid] = name
        time.sleep(ready_s)
        before = ledger.snapshot()
        time.sleep(0.1)
        return before, ledger.spent(before, ledger.snapshot())
    finally:
        proc.kill()
        proc.wait(10)


def test_a_process_that_ran_between_the_snapshots_is_charged_its_run_time() -> None:
    before, spent = _watched(_spinner(0.0, 3.0), "spinner", 0.3)  # started: spinning
    # It spun through the 100 ms, on a CPU it may have shared with other work; never more
    # than the time that passed.
    assert 10 <= spent["spinner"] <= 150
    assert list(spent) == sorted(spent, key=lambda n: -spent[n])  # most first
    assert os.getpid() not in {pid for pid, _tid in before}  # the client is left out


def test_only_threads_that_may_run_on_the_cpus_are_read() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    elsewhere = _spinner(0.0, 1.0, cpu=cpus[-1])
    try:
        time.sleep(0.05)
        ledger = CpuLedger(cpus={cpus[0]} if len(cpus) > 1 else {cpus[0] + 1})
        pids = {pid for pid, _tid in ledger.snapshot()}
    finally:
        elsewhere.kill()
        elsewhere.wait(10)
    assert elsewhere.pid not in pids


def test_unnamed_processes_are_named_by_their_title() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)", "extra"])
    try:
        time.sleep(0.1)
        ledger = CpuLedger()
        name = ledger.name_of(proc.pid)
    finally:
        proc.kill()
        proc.wait(10)
    assert name == f"{os.path.basename(sys.executable)} -c import"


def test_typical_and_unusual_rounds() -> None:
    rounds = [
        {"gateway": 6.0, "rooms": 1.0},
        {"gateway": 7.0, "rooms": 1.2},
        {"gateway": 6.5, "rooms": 1.1, "postgres: autovacuum worker": 20.0},
    ]
    usual = cpuledger.typical(rounds)
    assert usual == {"gateway": 6.5, "rooms": 1.1}  # autovacuum ran in one round of three
    assert cpuledger.unusual(rounds[2], usual) == {"postgres: autovacuum worker": 20.0}
    assert cpuledger.unusual(rounds[1], usual) == {"gateway": 0.5, "rooms": 0.1}
    assert cpuledger.unusual({"gateway": 6.52, "redis": 0.01}, usual) == {}  # a few µs more
    line = cpuledger.describe_slowest(
        {
            "slowest_rounds": [
                {"round": 3, "to_last_ms": 31.25, "busy_ms": 28.0, "over_typical_ms": {"x": 20.0}},
                {"round": 1, "to_last_ms": 9.0, "busy_ms": 7.0, "over_typical_ms": {}},
            ]
        }
    )
    assert line == (
        "slowest rounds, ms over a typical round: #3 31.2 ms (x +20.0); #1 9.0 ms (nothing unusual)"
    )
    assert cpuledger.describe_slowest(None) is None


THREAD_LATER = """import threading, time
def spin():
    end = time.monotonic() + 3
    while time.monotonic() < end: pass
time.sleep(0.4)
threading.Thread(target=spin).start()
time.sleep(3)
"""


def test_a_thread_started_after_a_snapshot_is_counted() -> None:
    proc = subprocess.Popen([sys.executable, "-c", THREAD_LATER])
    ledger = CpuLedger()
    time.sleep(0.2)
    ledger.snapshot()  # the process has its main thread only
    before, spent = _watched(proc, "late", 0.4, ledger)  # its second thread now spins
    assert len({tid for pid, tid in before if pid == proc.pid}) == 2
    assert spent["late"] >= 10
