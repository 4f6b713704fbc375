"""`make bench`: ShareTube's benchmark suite on a local stack; a table and .bench/report.json.

    python scripts/bench.py                 # the full suite (about 15 minutes here)
    python scripts/bench.py --size tiny     # seconds: CI runs this so the suite keeps working

Sections, each on a stack this script starts (services.common.devstack, pinned with
--stack-cpus, this process on --client-cpus, as issue 8 asks: the peer's hardware budget):

- floor: before any stack starts, the kernel's own cost of one core writing a frame to each
  of N loopback sockets (scripts/sendfloor.py, same pinning and timestamps): the part of
  fan-out no server design avoids on this machine; taken again after the last stack stops
  (`floor_<N>_end`), since this VM's speed moves within a run;
- fanout: a `seek` from one member to the last of N members of one room (scripts/fanout.py,
  kernel receive timestamps), for each N in the size's list;
- players: the same `seek` in a room of N players (`fanout.py --players`), as extension users
  are: the room goes `starting`, every player answers `ready`, and the round ends when
  `playing` has reached the last one;
- idle: sockets opened and held with heartbeats on (pings every HEARTBEAT_S): how many one
  gateway process holds and its RSS per connection;
- many rooms: R rooms x M members over WebSockets with a steady command rate, and sync under
  that load: clock-offset error and the spread of computed positions (loadtest gateway);
- services: each service loaded on its own over its NATS subjects (loadtest rooms, queue,
  chat, auth), closed loop, so the figure is what one replica carries; and the queue's and
  chat's parts of a join's snapshot (queue.load, chat.history), read the same way;
- scale-out: a second stack with 2 gateways and 2 rooms replicas: fan-out to members spread
  over both gateways, and whether every member saw the same events in the same order.

A section that fails is reported with its error and the others still run. Exit status: 0,
2 when an event was lost or reordered anywhere, 1 when a section could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest.api import run_driver  # noqa: E402
from loadtest.cpuledger import describe_slowest  # noqa: E402
from loadtest.options import READ_DRIVERS, LoadOptions, Target  # noqa: E402
from loadtest.progress import Progress  # noqa: E402
from loadtest.stack import add_durable_flag, keep_logs, started_stack  # noqa: E402
from scripts import fanout, idle, sendfloor  # noqa: E402
from scripts.pinning import parse_cpus  # noqa: E402

SETTLE_S = 2.0  # between sections, at least
QUIESCE_MAX_S = 120.0  # ... and until a directory read answers within QUIET_REPLY_S
QUIET_REPLY_S = 0.2
QUIET_CPU = 0.05  # ... and until the stack's CPUs are this busy at most, over a second
# The heartbeat during the benchmark: short, so idle sockets are pinged while they are held.
HEARTBEAT_S = 5.0

# The peer (issue 8): CyTube on this kind of machine, and our targets.
PEER = {
    "fanout_ms": {
        50: {"p50": 2.0, "p99": 7.6},
        200: {"p50": 4.0, "p99": 13.7},
        1000: {"p50": 9.6, "p99": 25.9},
        2000: {"p50": 16.0, "p99": 38.4},
    },
    "kb_per_connection": [57, 60],
}
TARGETS = {
    "fanout_1000_p50_ms": 8.0,
    "fanout_1000_p99_ms": 20.0,
    "fanout_200_p99_ms": 10.0,
    "idle_kb_per_connection": 20.0,
    "idle_connections": 10_000,
    "rooms_commands_per_s": 2000.0,
}


@dataclass(frozen=True)
class Size:
    fanout: tuple[int, ...]
    fanout_rounds: int
    idle_sockets: int
    idle_hold_s: float
    rooms: int
    members: int
    rate: float
    duration_s: float
    scale_out_members: int
    players: tuple[int, ...] = ()
    players_rounds: int = 0


SIZES = {
    "tiny": Size((10,), 3, 50, HEARTBEAT_S + 1, 5, 2, 20.0, 1.5, 10, (10,), 3),
    "full": Size(
        (100, 200, 1000, 5000),
        # 150 rounds, as `make fanout` takes: a p99 of 50 is their second-slowest, and the
        # first rounds after the joins are slower every time (docs/performance.md).
        150,
        10_000,
        2 * HEARTBEAT_S + 2,
        500,
        4,
        150.0,
        15.0,
        1000,
        (200, 1000),
        20,
    ),
}


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.size = SIZES[args.size]
        self.progress = Progress("bench", quiet=args.quiet)
        self.stack_cpus = parse_cpus(args.stack_cpus) if args.stack_cpus else None
        self.client_cpus = parse_cpus(args.client_cpus) if args.client_cpus else None
        self._target: Target | None = None
        self.report: dict[str, Any] = {
            "size": args.size,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "kernel": platform.release(),
                "loadavg_1m_at_start": os.getloadavg()[0],
            },
            "pinning": {"stack_cpus": args.stack_cpus, "client_cpus": args.client_cpus},
            "postgresql_durable_commits": args.durable,
            "peer": {"name": "CyTube", **PEER},
            "targets": TARGETS,
            "sections": {},
        }

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self._floors("")
        self._with_stack({}, self._single_replica_sections)
        if not self.args.skip_scale_out:
            self._with_stack({"gateway": 2, "rooms": 2}, self._scale_out)
        self._floors("_end")
        self.report["elapsed_s"] = round(time.monotonic() - started, 1)
        self.report["ok"] = all(s.get("ok", False) for s in self.report["sections"].values())
        return self.report

    def _floors(self, suffix: str) -> None:
        """The send floor for each fan-out size, with no stack running (`floor_<N><suffix>`)."""
        for n in self.size.fanout:
            self._section(
                f"floor_{n}{suffix}",
                lambda n=n: sendfloor.measure_send_floor(
                    n, self.size.fanout_rounds, self.stack_cpus, self.client_cpus
                ),
            )

    # -- stacks ------------------------------------------------------------------------------

    def _with_stack(self, replicas: dict[str, int], body: Any) -> None:
        counts = {"auth": 1, "rooms": 1, "queue": 1, "chat": 1, "gateway": 1, **replicas}
        try:
            with started_stack(
                counts, self.progress, self.stack_cpus, self.client_cpus, self.args.durable
            ) as (
                target,
                placement,
            ):
                self.report.setdefault("placements", []).append(placement)
                self._target = target
                body(target)
        except Exception as exc:  # the stack itself: every section of it is lost
            name = "stack" if not replicas else "scale_out"
            self.report["sections"][name] = {"ok": False, "error": repr(exc)}

    def _section(self, name: str, measure: Any) -> None:
        self.progress.note(f"== {name}")
        t = time.monotonic()
        try:
            result = measure()
        except Exception as exc:
            partial = getattr(exc, "partial", None)
            result = {"ok": False, "error": repr(exc), "partial": partial}
            if self.args.verbose:
                traceback.print_exc()
        result["elapsed_s"] = round(time.monotonic() - t, 1)
        result["loadavg_1m"] = os.getloadavg()[0]
        if not result.get("ok", False) and self._target and self._target.log_dir:
            # The stack's folder goes when it stops: what explains the failure stays here.
            dest = (ROOT / self.args.out).parent / "logs" / name
            if keep_logs(self._target.log_dir, dest):
                result["logs"] = str(dest)
                self.progress.note(f"{name} failed: the stack's logs are in {dest}")
        self.report["sections"][name] = result
        result["quiesce_s"] = self._quiesce()

    def _quiesce(self) -> float:
        """Wait until the stack answers a cheap command quickly again: a section's sockets
        closing leave rooms a backlog of disconnects (thousands of them after a big room),
        which the next section must not start behind."""
        started = time.monotonic()
        base_url = self._target.base_url if self._target else None
        time.sleep(SETTLE_S)
        while base_url and time.monotonic() - started < QUIESCE_MAX_S:
            t = time.monotonic()
            try:
                httpx.get(f"{base_url}/api/rooms", timeout=QUIESCE_MAX_S).raise_for_status()
            except httpx.HTTPError:
                pass
            if time.monotonic() - t < QUIET_REPLY_S:
                break
            time.sleep(1.0)
        # Then until the stack's CPUs are idle: PostgreSQL's autovacuum after a load, or the
        # janitor sweeping a big room's departed members, would otherwise run during the
        # next section's measurement.
        cpus = self.stack_cpus or set(range(os.cpu_count() or 1))
        while time.monotonic() - started < QUIESCE_MAX_S:
            if busy_fraction(cpus, 1.0) < QUIET_CPU:
                break
        return round(time.monotonic() - started, 1)

    def _single_replica_sections(self, target: Target) -> None:
        """Idle sockets first, on a gateway nothing has used yet (its RSS growth is then the
        sockets'), the services while the stack is quiet, many rooms, then fan-out."""
        gateway_pid = target.pids.get("gateway-0")
        size = self.size
        self._section(
            "idle",
            lambda: idle.hold(
                target.base_url, gateway_pid, size.idle_sockets, size.idle_hold_s, self.args.quiet
            ),
        )
        for service in ("rooms", "queue", "chat", "auth"):
            self._section(f"service_{service}", lambda s=service: self._driver(s, target))
        # The queue's and chat's parts of every join's snapshot.
        for service in READ_DRIVERS:
            self._section(
                f"service_{service}_reads", lambda s=service: self._driver(s, target, reads=True)
            )
        self._section("many_rooms", lambda: self._driver("gateway", target))
        for n in size.players:
            self._section(
                f"players_{n}",
                lambda n=n: self._fanout(target, n, [gateway_pid], players=True),
            )
        # Last: thousands of members leaving one room keep rooms busy for a while after.
        for n in size.fanout:
            self._section(f"fanout_{n}", lambda n=n: self._fanout(target, n, [gateway_pid]))

    def _scale_out(self, target: Target) -> None:
        pids = [target.pids.get(f"gateway-{i}") for i in range(len(target.base_urls))]
        n = self.size.scale_out_members
        self._section("scale_out_fanout", lambda: self._fanout(target, n, pids))
        self._section("scale_out_many_rooms", lambda: self._driver("gateway", target))

    # -- measurements ------------------------------------------------------------------------

    def _fanout(
        self, target: Target, clients: int, pids: list[int | None], players: bool = False
    ) -> dict[str, Any]:
        options = fanout.Options(
            quiet=self.args.quiet,
            stack_cpus=self.stack_cpus,
            stack_names={pid: name for name, pid in target.pids.items()},
            started_stack=True,
            players=players,
            # A round waits for every player's `ready`: give the room time to settle after.
            interval_ms=300.0 if players else 100.0,
        )
        result = fanout.measure_fanout(
            list(target.base_urls),
            clients,
            self.size.players_rounds if players else self.size.fanout_rounds,
            pids,
            self.client_cpus,
            options,
        )
        sequence = result.get("sequence", {})
        result["ok"] = (
            bool(result.get("ok")) and not sequence.get("lost") and not sequence.get("reordered")
        )
        return result

    def _driver(self, service: str, target: Target, reads: bool = False) -> dict[str, Any]:
        size = self.size
        options = LoadOptions(duration_s=size.duration_s, quiet=self.args.quiet, reads=reads)
        if service == "gateway":
            options.rooms, options.members, options.rate = size.rooms, size.members, size.rate
        else:
            options.rate = 0  # closed loop: what one replica carries
            options.concurrency = 16
            options.rooms = max(4, size.rooms // 10)
        result = asyncio.run(run_driver(service, options, target))
        result["ok"] = (
            bool(result.get("ok", True)) and not result.get("lost") and not result.get("errors")
        )
        return result


def busy_fraction(cpus: set[int], window_s: float) -> float:
    """How busy `cpus` were over the next `window_s` seconds (0..1, their mean)."""
    per_cpu = psutil.cpu_percent(interval=window_s, percpu=True)
    busy = [per_cpu[cpu] for cpu in cpus if cpu < len(per_cpu)]
    return sum(busy) / len(busy) / 100 if busy else 0.0


# -- the table ----------------------------------------------------------------------------------


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}"


def _floor_p50(sections: dict[str, Any], name: str) -> str:
    """A floor section's p50 (ms), "-" when it was not taken (the 2 gateways' row)."""
    return _ms(((sections.get(name) or {}).get("to_last_socket_ms") or {}).get("p50"))


def _long_collections(section: dict[str, Any]) -> str:
    """The gateways' collections over 10 ms during the rounds ("-": no figures)."""
    ran = section.get("gateway_gc_during_rounds") or []
    if not ran or any(r is None for r in ran):
        return "-"
    return str(sum(r["over_10ms"] for r in ran))


def render(report: dict[str, Any]) -> str:
    lines = [f"ShareTube benchmark ({report['size']}), pinning {report['pinning']}", ""]
    sections = report["sections"]
    lines.append(
        "fan-out: seek -> last of N members (ms)      p50     p95     p99     max  lost"
        "  floor p50 before/after  GC>10ms"
    )
    for name, s in sections.items():
        if not name.startswith(("fanout_", "scale_out_fanout")):
            continue
        last = s.get("to_last_member_ms") or {}
        seq = s.get("sequence") or {}
        label = name.replace("fanout_", "N=").replace("scale_out_", "2 gateways, ")
        if "error" in s:
            lines.append(f"  {label:<40} error: {s['error'][:80]}")
            continue
        floor = name.replace("fanout_", "floor_")
        floors = f"{_floor_p50(sections, floor)}/{_floor_p50(sections, floor + '_end')}"
        lines.append(
            f"  {label:<40} {_ms(last.get('p50')):>7} {_ms(last.get('p95')):>7} "
            f"{_ms(last.get('p99')):>7} {_ms(last.get('max')):>7}  {seq.get('lost', '?'):>4}"
            f"  {floors:>22}  {_long_collections(s):>7}"
        )
        slowest = describe_slowest(s.get("cpu_during_rounds"))
        if slowest:
            lines.append(f"    {slowest}")
    players = [(name, s) for name, s in sections.items() if name.startswith("players_")]
    if players:
        lines.append("")
        lines.append(
            "players: seek -> `playing` at the last of N players, all `ready` (ms)"
            "  p50     p95     p99     max  lost"
        )
        for name, s in players:
            label = name.replace("players_", "N=")
            if "error" in s:
                lines.append(f"  {label:<40} error: {s['error'][:80]}")
                continue
            last = s.get("to_last_member_ms") or {}
            seq = s.get("sequence") or {}
            lines.append(
                f"  {label:<40} {_ms(last.get('p50')):>7} {_ms(last.get('p95')):>7} "
                f"{_ms(last.get('p99')):>7} {_ms(last.get('max')):>7}  {seq.get('lost', '?'):>4}"
            )
    idle_s = sections.get("idle", {})
    if idle_s:
        lines.append("")
        if "error" in idle_s:
            lines.append(f"idle: error {idle_s['error'][:100]}")
        else:
            lines.append(
                f"idle: {idle_s.get('held')}/{idle_s.get('sockets')} sockets held "
                f"{idle_s.get('hold_s')} s with heartbeats ({idle_s.get('pongs')} pongs), "
                f"{idle_s.get('kb_per_connection')} KB RSS per connection"
            )
    lines.append("")
    lines.append("load                          ops/s      p50      p99   errors  lost")
    for name in (
        "many_rooms",
        "service_rooms",
        "service_queue",
        "service_chat",
        "service_queue_reads",
        "service_chat_reads",
        "service_auth",
        "scale_out_many_rooms",
    ):
        s = sections.get(name)
        if not s:
            continue
        if "error" in s and "ops" not in s:
            lines.append(f"  {name:<26} error: {s['error'][:80]}")
            continue
        lat = s.get("latency_ms") or {}
        lines.append(
            f"  {name:<26} {s.get('ops_per_s', 0):>7.0f} {_ms(lat.get('p50')):>8} "
            f"{_ms(lat.get('p99')):>8} {s.get('errors', '?'):>8} {s.get('lost', 0):>5}"
        )
    sync = (sections.get("many_rooms") or {}).get("sync")
    if sync:
        lines.append("")
        offset, spread = sync["offset_error_ms"], sync["spread_ms"]
        lines.append(
            f"sync under load: clock offset error p50 {_ms(offset.get('p50'))} / p99 "
            f"{_ms(offset.get('p99'))} ms, position spread p50 {_ms(spread.get('p50'))} / p99 "
            f"{_ms(spread.get('p99'))} ms"
        )
    lines.append("")
    lines.append(f"ok: {report.get('ok')}   elapsed: {report.get('elapsed_s')} s")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--out", default=".bench/report.json")
    parser.add_argument("--stack-cpus", default=None, help="e.g. 0 (default on 2+ cores)")
    parser.add_argument("--client-cpus", default=None, help="e.g. 1 (default on 2+ cores)")
    parser.add_argument("--skip-scale-out", action="store_true")
    add_durable_flag(parser)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if (os.cpu_count() or 1) >= 2:
        args.stack_cpus = args.stack_cpus or "0"
        args.client_cpus = args.client_cpus or "1"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = SIZES[args.size]
    # Children inherit it: the gateway holds the other end of every socket.
    fanout.raise_fd_limit(max(size.idle_sockets, *size.fanout))
    os.environ["HEARTBEAT_INTERVAL_SECONDS"] = str(HEARTBEAT_S)
    report = Suite(args).run()
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(render(report))
    print(f"report: {out}")
    sections = report["sections"].values()
    if any(
        (s.get("sequence") or {}).get("lost")
        or s.get("lost")
        or (s.get("sequence") or {}).get("reordered")
        for s in sections
    ):
        return 2
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
