"""Idle sockets: how many one gateway process holds, and what each costs it in memory.

`hold` opens N WebSockets (one guest's token; the lean epoll client of scripts/epollws.py,
which answers the gateway's heartbeat pings), reads the gateway's VmRSS before and after,
keeps them open for `hold_s` seconds (the stack runs with a heartbeat shorter than that, so
every socket is pinged and must answer), and counts how many are still open at the end.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx

from scripts.epollws import OPEN, Conn, EpollClient
from scripts.fanout import read_rss_kb

CONNECT_BATCH = 200  # sockets opening at once
CONNECT_TIMEOUT_S = 120.0


class _Counter:
    """The client's handler: idle sockets expect nothing; count what happens to them."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.frames = 0

    def on_open(self, conn: Conn) -> None:
        self.opened += 1

    def on_text(self, conn: Conn, payload: bytes, ts_ns: int) -> None:
        self.frames += 1

    def on_head(self, conn: Conn, head: bytes, length: int, ts_ns: int) -> bool:
        self.frames += 1
        return True

    def on_close(self, conn: Conn) -> None:
        self.closed += 1


def hold(
    base_url: str, gateway_pid: int | None, sockets: int, hold_s: float, quiet: bool = True
) -> dict[str, Any]:
    token = httpx.post(f"{base_url}/auth/guest", json={"name": "idle"}, timeout=10).json()["token"]
    host, port = base_url.removeprefix("http://").split(":")
    counter = _Counter()
    client = EpollClient(counter)
    conns = [Conn() for _ in range(sockets)]
    time.sleep(1.0)
    before = read_rss_kb(gateway_pid)
    started = time.monotonic()
    deadline = started + CONNECT_TIMEOUT_S
    try:
        for first in range(0, sockets, CONNECT_BATCH):
            for conn in conns[first : first + CONNECT_BATCH]:
                client.connect(conn, host, int(port), f"/ws?token={token}")
            target = min(first + CONNECT_BATCH, sockets)
            while counter.opened + counter.closed < target and time.monotonic() < deadline:
                client.poll(0.05)
        connect_s = time.monotonic() - started
        # Settle: the gateway's allocations for the last sockets land, then read its memory.
        settle_until = time.monotonic() + 1.0
        while time.monotonic() < settle_until:
            client.poll(0.05)
        after = read_rss_kb(gateway_pid)
        hold_until = time.monotonic() + hold_s
        while time.monotonic() < hold_until:
            client.poll(0.1)
        held = sum(1 for conn in conns if conn.state == OPEN)
        after_hold = read_rss_kb(gateway_pid)
        if not quiet:
            print(f"idle: {counter.opened}/{sockets} opened in {connect_s:.1f} s, {held} held")
        per_kb = None
        if before is not None and after is not None and counter.opened:
            per_kb = round((after - before) / counter.opened, 2)
        return {
            "ok": held == sockets,
            "sockets": sockets,
            "opened": counter.opened,
            "held": held,
            "closed": counter.closed,
            "close_codes": dict(Counter(c.close_code for c in conns if c.state != OPEN)),
            "hold_s": hold_s,
            "connect_s": round(connect_s, 2),
            "pongs": client.pongs_sent,
            "frames": counter.frames,
            "rss_kb": {"before": before, "after_connect": after, "after_hold": after_hold},
            "kb_per_connection": per_kb,
        }
    finally:
        client.close([c for c in conns if c.state == OPEN], wait_s=5.0)
        client.shutdown()
