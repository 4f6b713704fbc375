"""The run's JSON report, and the table printed at the end.

Every driver's report has the same top: `service`, `transport`, `scenario`, `config`,
`target`, `machine`, `ops`, `ops_per_s`, `errors`, `errors_by_code`, `unacked`, `latency_ms`
{count, p50, p95, p99, max, mean}, `by_kind`, `lost`, `reordered`, `ok`; then the driver's
own sections (`events`, `delivery_ms`, `sync`, `notes` for the table, ...), `schedule`,
`processes` and `phases`. `ok` is false when anything was lost, reordered or left without a
reply: the command line then exits 2.
"""

import os
import sys
from pathlib import Path
from typing import Any

import orjson

from .options import LoadOptions, Target
from .pacing import Schedule
from .stats import Tallies

# Sections with latency summaries a driver may add, and how the table names them.
EXTRA_LATENCIES = {
    "delivered_ms": "send -> delivered",
    "delivery_ms": "command -> event, every member",
}


def build(
    *,
    service: str,
    transport: str,
    scenario: str,
    options: LoadOptions,
    target: Target,
    config: dict[str, Any],
    schedule: Schedule,
    tallies: Tallies,
    checks: dict[str, Any],
    processes: dict[str, Any],
    phases: dict[str, float],
) -> dict[str, Any]:
    counts = tallies.report(schedule.elapsed_s)
    total = counts["total"]
    # An operation cancelled after the drain wait never got its answer either.
    unacked = total["unacked"] + schedule.unfinished
    lost = int(checks.pop("lost", 0))
    reordered = int(checks.pop("reordered", 0))
    return {
        "service": service,
        "transport": transport,
        "scenario": scenario,
        "config": {**options.to_json(), **config, "rate": schedule.target_rate},
        "target": target.to_json(),
        "machine": {
            "cpus": os.cpu_count(),
            "this_process_cpus": sorted(os.sched_getaffinity(0)),
            "loadavg_1m": round(os.getloadavg()[0], 2),
            "python": sys.version.split()[0],
        },
        "ops": total["ops"],
        "ops_per_s": total["ops_per_s"],
        "errors": total["errors"],
        "errors_by_code": total["errors_by_code"],
        "unacked": unacked,
        "latency_ms": total["latency_ms"],
        "by_kind": counts["by_kind"],
        "lost": lost,
        "reordered": reordered,
        "ok": lost == 0 and reordered == 0 and unacked == 0 and total["ops"] > 0,
        **checks,
        "schedule": schedule.to_json(),
        "processes": processes,
        "phases": phases,
    }


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")


def _ms(value: float | None) -> str:
    return f"{value:9.2f}" if value is not None else f"{'-':>9}"


def _row(label: str, ops: Any, rate: Any, errors: Any, lat: dict[str, Any]) -> str:
    rate_text = f"{rate:9.1f}" if isinstance(rate, int | float) else f"{'':>9}"
    return (
        f"{label:32}{ops!s:>9}{rate_text}{_ms(lat.get('p50'))}{_ms(lat.get('p95'))}"
        f"{_ms(lat.get('p99'))}{_ms(lat.get('max'))}{errors!s:>8}"
    )


def render(result: dict[str, Any], color: bool = False) -> str:
    bold, red, green, reset = ("\x1b[1m", "\x1b[31m", "\x1b[32m", "\x1b[0m") if color else ("",) * 4
    sched = result["schedule"]
    how = (
        f"{sched['target_rate']:g}/s open loop, <= {sched['concurrency']} in flight"
        if sched["mode"] == "open"
        else f"closed loop, {sched['concurrency']} workers"
    )
    lines = [
        f"{bold}{result['service']} load{reset}: {sched['elapsed_s']:.1f} s, {how}; "
        f"{result['scenario']}",
        f"via {result['transport']}",
        f"{'':32}{'ops':>9}{'ops/s':>9}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}{'errors':>8}  (ms)",
    ]
    for kind, k in result["by_kind"].items():
        lines.append(_row(kind, k["ops"], k["ops_per_s"], k["errors"], k["latency_ms"]))
    lines.append(
        _row("all (request -> reply)", result["ops"], result["ops_per_s"], result["errors"],
             result["latency_ms"])
    )  # fmt: skip
    for key, label in EXTRA_LATENCIES.items():
        if key in result:
            lat = result[key]
            lines.append(_row(label, lat["count"], None, "", lat))
    if result["errors_by_code"]:
        lines.append(f"errors by code: {result['errors_by_code']}")
    events = result.get("events")
    if events:
        lines.append(
            f"events: {events['received']} received over {events['streams']} streams, "
            f"{events['lost']} lost, {events['reordered']} reordered, "
            f"{events['duplicates']} duplicates"
            + (
                f" ({events['out_of_order_within_hold']} out of order on the bus, put back "
                "within the gateway's 250 ms)"
                if events.get("out_of_order_within_hold")
                else ""
            )
        )
    for line in result.get("notes", []):
        lines.append(line)
    sync = result.get("sync")
    if sync:
        off, spread, rtt = sync["offset_error_ms"], sync["spread_ms"], sync["ping_rtt_ms"]
        lines.append(
            f"sync under load ({sync['probes']} probes, {sync['clock_syncs']} clock syncs): "
            f"|offset| p50 {_ms(off['p50']).strip()} p99 {_ms(off['p99']).strip()} ms; "
            f"position spread p50 {_ms(spread['p50']).strip()} p99 {_ms(spread['p99']).strip()} "
            f"max {_ms(spread['max']).strip()} ms; ping rtt p50 {_ms(rtt['p50']).strip()} "
            f"p99 {_ms(rtt['p99']).strip()} ms"
        )
    procs = result.get("processes") or {}
    if procs:
        lines.append(
            "cpu (% of one core) / rss: "
            + ", ".join(
                f"{name} {p['cpu_pct']:.0f}% {p['rss_mb']:.0f} MB"
                for name, p in procs.items()
                if not p.get("gone")
            )
        )
    state = (
        f"{green}OK: nothing lost, every request answered{reset}"
        if result["ok"]
        else f"{red}FAILED: {result['lost']} lost, {result['reordered']} reordered, "
        f"{result['unacked']} unanswered, {result['ops']} ops{reset}"
    )
    lines.append(state)
    return "\n".join(lines)
