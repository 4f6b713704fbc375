"""`python -m loadtest <service> [options]` (`make load SERVICE=rooms ARGS="..."`).

    python -m loadtest rooms --start --duration 10 --rate 300
    python -m loadtest gateway --start --rooms 500 --members 4 --stack-cpus 0 --client-cpus 1
    python -m loadtest chat --url http://127.0.0.1:8000 --nats-url nats://127.0.0.1:14222

A progress line on stderr while it runs, a table at the end, the JSON report in --out.
Exit status: 0 when nothing was lost, 2 when something was (an event, a delivery, a reply;
the report is still written), 1 when the run could not happen or nothing succeeded, 130 on
Ctrl-C or SIGTERM.
"""

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from . import report
from .affinity import parse_cpus, pin_self
from .api import DRIVERS, run_driver
from .errors import LoadError
from .options import READ_DRIVERS, LoadOptions, Target
from .progress import Progress
from .stack import LOAD_ENV, add_durable_flag, parse_replicas, started_stack


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest", description="Load one ShareTube service and report."
    )
    parser.add_argument("service", choices=sorted(DRIVERS))
    where = parser.add_argument_group("target")
    where.add_argument("--start", action="store_true", help="start a whole local stack here")
    where.add_argument(
        "--url",
        action="append",
        help="a running gateway, e.g. http://127.0.0.1:8000 (repeat for several)",
    )
    where.add_argument("--nats-url", default="nats://127.0.0.1:14222", help="its bus")
    where.add_argument("--redis-url", help="its Redis (bus drivers keep their sessions alive)")
    where.add_argument(
        "--pid", action="append", default=[], help="NAME=PID of a target process, for CPU/RSS"
    )
    where.add_argument("--replicas", help="with --start: N of each, or e.g. rooms=2,gateway=2")
    where.add_argument("--stack-cpus", help="with --start: pin the stack here, e.g. 0")
    add_durable_flag(where)
    where.add_argument("--client-cpus", help="pin this process here, e.g. 1")
    load = parser.add_argument_group("load")
    load.add_argument("--duration", type=float, default=10.0, help="seconds of load")
    load.add_argument(
        "--rate", type=float, help="target ops/s, open loop (0: closed loop; default per driver)"
    )
    load.add_argument("--concurrency", type=int, default=64, help="operations in flight at most")
    load.add_argument("--rooms", type=int, help="rooms (default per driver)")
    load.add_argument("--members", type=int, help="members per room (default per driver)")
    load.add_argument("--probes", type=int, default=3, help="gateway: clock-sync probe clients")
    load.add_argument("--auth-via", choices=("nats", "http"), default="nats")
    load.add_argument(
        "--reads",
        action="store_true",
        help="queue, chat: the reads of a join's snapshot (queue.load, chat.history) "
        "instead of writes",
    )
    load.add_argument("--timeout", type=float, help="reply timeout (default: the command's)")
    load.add_argument("--setup-concurrency", type=int, default=32)
    out = parser.add_argument_group("output")
    out.add_argument("--out", help="JSON report (default .bench/load-<service>.json)")
    out.add_argument("--quiet", action="store_true", help="no progress line")
    out.add_argument("--no-color", action="store_true")
    args = parser.parse_args(argv)
    if args.start and args.url:
        parser.error("--start or --url, not both")
    if args.duration <= 0 or args.concurrency < 1 or (args.rate is not None and args.rate < 0):
        parser.error("--duration and --concurrency must be positive, --rate at least 0")
    if args.reads and args.service not in READ_DRIVERS:
        parser.error(f"--reads is for {' and '.join(READ_DRIVERS)}")
    for name in ("rooms", "members"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    try:
        args.replicas = parse_replicas(args.replicas)
        args.stack_cpus = parse_cpus(args.stack_cpus) if args.stack_cpus else None
        args.client_cpus = parse_cpus(args.client_cpus) if args.client_cpus else None
        args.pid = dict(_name_pid(item) for item in args.pid)
    except ValueError as exc:
        parser.error(str(exc))
    if args.stack_cpus and not args.start:
        parser.error("--stack-cpus needs --start (a running stack is pinned by whoever ran it)")
    if args.durable and not args.start:
        parser.error("--durable needs --start (a running stack's database is what it is)")
    args.out = Path(args.out or f".bench/load-{args.service}.json")
    return args


def _name_pid(item: str) -> tuple[str, int]:
    name, _, pid = item.partition("=")
    if not name or not pid.isdigit():
        raise ValueError(f"--pid: {item!r} is not NAME=PID")
    return name, int(pid)


def options_from(args: argparse.Namespace) -> LoadOptions:
    return LoadOptions(
        duration_s=args.duration,
        rate=args.rate,
        concurrency=args.concurrency,
        rooms=args.rooms,
        members=args.members,
        timeout_s=args.timeout,
        setup_concurrency=args.setup_concurrency,
        probes=args.probes,
        auth_via=args.auth_via,
        reads=args.reads,
        quiet=args.quiet,
    )


def _run_async(coro: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:  # SIGTERM stops the run as Ctrl-C does: sockets close first
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await coro
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:
        return asyncio.run(main())


def run(args: argparse.Namespace) -> dict[str, Any]:
    options = options_from(args)
    progress = Progress("loadtest", args.quiet)
    if args.start:
        if args.service == "gateway":
            # The gateway started here inherits this process's open-file limit.
            from .wsclient import ensure_descriptors

            rooms = args.rooms or DRIVERS["gateway"].defaults.rooms
            members = args.members or DRIVERS["gateway"].defaults.members
            ensure_descriptors(rooms * members + args.probes)
        with started_stack(
            args.replicas, progress, args.stack_cpus, args.client_cpus, args.durable
        ) as (
            target,
            placement,
        ):
            result = _run_async(run_driver(args.service, options, target))
        result["placement"] = placement
        result["config"]["replicas"] = args.replicas
        result["config"]["stack_env"] = LOAD_ENV  # the limits raised for the run
        return result
    if args.client_cpus:
        pin_self(args.client_cpus)
    target = Target(
        base_urls=tuple(u.rstrip("/") for u in (args.url or ["http://127.0.0.1:8000"])),
        nats_url=args.nats_url,
        redis_url=args.redis_url,
        pids=args.pid,
    )
    return _run_async(run_driver(args.service, options, target))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)

    def on_sigterm(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # outside the event loop: unwind, stop what was started

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        result = run(args)
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.stderr.write("\ninterrupted\n")
        return 130
    except LoadError as exc:
        sys.stderr.write(f"loadtest: {exc}\n")
        return 1
    report.write(args.out, result)
    color = not args.no_color and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    print(report.render(result, color))
    print(f"report: {args.out}")
    if result["ops"] == 0:
        return 1
    return 0 if result["ok"] else 2
