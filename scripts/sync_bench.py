"""Sync benchmark: how closely N browsers with the extension play one room's video.

    python scripts/sync_bench.py                       # 4 browsers, 4 rounds of 10 s
    python scripts/sync_bench.py --browsers 3 --rounds 2 --seconds 5

It starts the whole system in a temporary folder (NATS, PostgreSQL, Redis, migrations, then
auth, rooms, queue, chat and gateway as separate processes), the HTTPS stand-in for
www.youtube.com and N headless Chromiums, each a user with the unpacked extension
(tests/browser/harness.py, the same as the browser tests). The first user creates a room in
its popup, the others join with the code, the first queues the stand-in video and presses play.

Each round starts playback together (round 1: play; later rounds: a seek, which goes through
`starting` again), waits until every video plays, then samples every browser's
video.currentTime at the same wall-clock instants, every --every-ms for --seconds. The spread
of one instant is the largest minus the smallest position; the report gives p50 / p95 / max
over all instants, per round and overall, and is written as JSON to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.browser import harness  # noqa: E402
from tests.support.system import System, migrated_servers  # noqa: E402

NAMES = ["Ann", "Ben", "Cat", "Dan", "Eve", "Fay", "Gus", "Hal"]
VIDEO_ID = next(iter(harness.VIDEOS))


@contextlib.contextmanager
def stack(root: Path) -> Iterator[System]:
    """The whole system as processes, stopped in reverse order however the block ends."""
    with migrated_servers(root) as servers:
        log_dir = root / "logs"
        log_dir.mkdir(parents=True)
        env = {
            **os.environ,
            **servers.env,
            "JWT_SECRET": secrets.token_hex(32),
            "LOG_LEVEL": "WARNING",
        }
        env.pop("PORT", None)
        system = System(env=env, log_dir=log_dir)
        try:
            system.start({"auth": 1, "rooms": 1, "queue": 1, "chat": 1, "gateway": 1})
            yield system
        finally:
            system.stop()


async def wait_all_playing(users: list[harness.ExtBrowser], after_ms: float) -> None:
    async def playing(user: harness.ExtBrowser) -> bool:
        pb = await user.room_playback()
        v = await user.video()
        return bool(
            pb and pb["status"] == "playing" and v and not v["paused"] and v["pos"] > after_ms
        )

    await asyncio.gather(
        *(harness.wait_until(lambda u=u: playing(u), timeout=20, what=u.name) for u in users)
    )


async def sample_round(
    users: list[harness.ExtBrowser], seconds: float, every_ms: int
) -> list[float]:
    count = max(1, int(seconds * 1000 / every_ms))
    start = int(time.time() * 1000) + 300
    spreads = []
    for i in range(count):
        samples = await asyncio.gather(*(u.sample_at(start + i * every_ms) for u in users))
        if any(s["paused"] for s in samples):
            raise RuntimeError(f"a video paused during the round: {samples}")
        spreads.append(harness.spread_ms(samples))
    return spreads


async def run(args: argparse.Namespace, system: System, workdir: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    standin = harness.StandIn(harness.make_video(), workdir).start()
    users: list[harness.ExtBrowser] = []
    try:
        async with async_playwright() as pw:
            for name in NAMES[: args.browsers]:
                user = await harness.launch(pw, name, standin.port, workdir / f"profile-{name}")
                users.append(user)
                await harness.set_server(user, system.base_url)
                popup = await user.popup()
                await user.sign_in(popup, name)
                await popup.close()
                await user.open_watch(VIDEO_ID)
            owner = users[0]
            popup = await owner.popup()
            code = await owner.create_room(popup, "owner_only")
            await popup.close()
            for user in users[1:]:
                popup = await user.popup()
                await user.join(popup, code)
                await popup.close()
            await owner.overlay("add-current").click()
            await harness.wait_until(
                lambda: owner.watch.locator(
                    "sharetube-overlay [data-st='queue'] li[data-entry]"
                ).count(),
                what="queued",
            )

            rounds: list[dict[str, Any]] = []
            all_spreads: list[float] = []
            for r in range(args.rounds):
                at_ms = 0.0
                if r == 0:
                    await owner.overlay("play").click()
                else:
                    at_ms = 5_000.0 + r * 12_000.0
                    await owner.sw(
                        "(ms) => globalThis.sharetube.command('seek', {position_ms: ms})", at_ms
                    )
                await wait_all_playing(users, at_ms + 200)
                spreads = await sample_round(users, args.seconds, args.every_ms)
                rounds.append({"start_at_ms": at_ms, **harness.summary(spreads)})
                print(f"round {r + 1}: {rounds[-1]}", flush=True)
                all_spreads.extend(spreads)
            return {
                "browsers": args.browsers,
                "every_ms": args.every_ms,
                "seconds_per_round": args.seconds,
                "overall": harness.summary(all_spreads),
                "rounds": rounds,
                "machine": {"cpus": os.cpu_count()},
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
    finally:
        for user in users:
            with contextlib.suppress(Exception):
                await user.close()
        standin.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--browsers", type=int, default=4, help="users, one Chromium each")
    parser.add_argument("--rounds", type=int, default=4, help="synchronized starts")
    parser.add_argument("--seconds", type=float, default=10.0, help="sampling per round")
    parser.add_argument("--every-ms", type=int, default=250, help="between sample instants")
    parser.add_argument("--out", default=".bench/sync.json")
    args = parser.parse_args(argv)
    if not 2 <= args.browsers <= len(NAMES) or args.rounds < 1 or args.rounds > 6:
        parser.error(f"--browsers 2-{len(NAMES)}, --rounds 1-6 (the video is 90 s)")

    harness.ensure_system_packages()
    workdir = Path(tempfile.mkdtemp(prefix="sharetube-syncbench-"))
    try:
        with stack(workdir / "stack") as system:
            report = asyncio.run(run(args, system, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    o = report["overall"]
    print(
        f"spread over {args.browsers} browsers, {o['n']} instants: "
        f"p50 {o['p50_ms']} ms, p95 {o['p95_ms']} ms, max {o['max_ms']} ms → {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
