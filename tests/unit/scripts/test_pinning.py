"""scripts/pinning.py: CPU lists, the process tree under a PID, and pinning every thread of it."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from scripts import pinning

# A child that starts a thread and a grandchild, prints the grandchild's PID, and starts one
# more grandchild when a line arrives on stdin (to see that it inherits the affinity).
CHILD = """
import subprocess, sys, threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])]
print(kids[0].pid, flush=True)
sys.stdin.readline()
kids.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
print(kids[1].pid, flush=True)
sys.stdin.readline()
for kid in kids:
    kid.kill()
    kid.wait()
"""


def test_cpu_lists_parse_and_format_like_taskset() -> None:
    assert pinning.parse_cpus("1") == {1}
    assert pinning.parse_cpus("0,2-4, 7") == {0, 2, 3, 4, 7}
    assert pinning.format_cpus({0, 2, 3, 4, 7}) == "0,2-4,7"
    assert pinning.format_cpus([1]) == "1"
    for bad in ("", "a", "3-1", "-1", "1-"):
        with pytest.raises(ValueError):
            pinning.parse_cpus(bad)


@pytest.fixture
def family():
    """(child, grandchild PID): a Python child with a thread and a grandchild of its own."""
    with subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            yield child, int(child.stdout.readline())
        finally:
            for pid in pinning.process_tree([child.pid])[1:]:  # its own children
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            child.kill()


def test_the_tree_holds_children_and_grandchildren_found_both_ways(family) -> None:
    child, grandchild = family
    assert pinning.process_tree([child.pid]) == [child.pid, grandchild]
    assert pinning._children_by_stat(child.pid) == pinning.children(child.pid) == [grandchild]
    assert len(pinning.threads(child.pid)) >= 2  # the main thread and the sleeping one
    assert pinning.threads(child.pid)[0] == child.pid


def test_pin_tree_moves_every_thread_and_what_starts_later_inherits_it(family) -> None:
    child, grandchild = family
    cpu = max(os.sched_getaffinity(0))
    result = pinning.pin_tree([child.pid], {cpu})
    assert result["processes"] == 2 and result["failed"] == 0
    assert result["threads"] >= 3
    for pid in (child.pid, grandchild):
        for tid in pinning.threads(pid):
            assert os.sched_getaffinity(tid) == {cpu}

    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("\n")
    child.stdin.flush()
    later = int(child.stdout.readline())
    assert os.sched_getaffinity(later) == {cpu}
    assert pinning.affinity(later) == str(cpu)
    assert later in pinning.process_tree([child.pid])


def test_pin_self_moves_all_of_this_process_and_back() -> None:
    original = os.sched_getaffinity(0)
    cpu = min(original)
    try:
        pinning.pin_self({cpu})
        assert all(os.sched_getaffinity(t) == {cpu} for t in pinning.threads(os.getpid()))
    finally:
        pinning.pin_self(original)
    assert os.sched_getaffinity(0) == original


def test_a_process_that_is_gone_is_skipped() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    time.sleep(0.05)
    assert pinning.threads(proc.pid) == []
    assert pinning.children(proc.pid) == []
    assert pinning.pin_tree([proc.pid], {0}) == {
        "cpus": "0",
        "processes": 0,
        "threads": 0,
        "failed": 0,
    }
    assert pinning.affinity(proc.pid) is None
