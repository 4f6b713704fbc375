"""The shared JS protocol client against the real gateway (Node's built-in WebSocket)."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.client import guest
from tests.support.system import System

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "clients/js/live/two_clients.mjs"


def test_js_client_joins_plays_and_computes_the_same_position(system: System) -> None:
    node = shutil.which("node")
    assert node, "make test needs Node.js 20+"
    owner, _ = guest(system.base_url, "Owner")
    member, _ = guest(system.base_url, "Member")
    done = subprocess.run(
        [
            node,
            "--experimental-websocket",
            "--no-warnings",
            str(SCRIPT),
            system.ws_url,
            owner,
            member,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["status"] == "playing" and seen["video"] == "dQw4w9WgXcQ"
    assert seen["queueAfterPlay"] == 0
    assert seen["forbidden"] == "forbidden"  # owner_only: the member may not pause
    assert seen["membersOnline"] == 2
    assert seen["clock"]["rttMs"] >= 0 and abs(seen["clock"]["offsetMs"]) < 1000
    # Both clients compute where the video is from the same event and their own clocks.
    assert abs(seen["ownerExpected"] - seen["guestExpected"]) < 100
    assert seen["guestExpected"] > 0
