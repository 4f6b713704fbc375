"""`make run`: the whole of ShareTube on one machine, no root and no system services.

1. NATS, PostgreSQL and Redis: the URLs in the environment, else servers already answering on
   the fixed local ports (an earlier run), else embedded ones with their data under `.run/`.
2. Migrations (`alembic upgrade head`).
3. One process per service, its output prefixed with its name; a service that dies on its
   own is restarted with a backoff, so the others keep running.

Ctrl-C or SIGTERM stops the services in reverse order, then the servers this run started; a
second Ctrl-C kills the services instead of waiting for them.
"""

import argparse
import asyncio
import collections
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from services.common.devstack import LocalStack, ServerStartError, free_port

REPO = Path(__file__).resolve().parent.parent
RUN_DIR = REPO / ".run"
# Started in this order, stopped in reverse (the gateway first, so it stops taking requests
# before the services behind it go). SHARETUBE_SERVICES=auth,rooms overrides it.
SERVICES = ["auth", "rooms", "queue", "chat", "janitor", "gateway"]
# What a service gets to drain after SIGTERM (open WebSockets, in-flight commands).
STOP_TIMEOUT_S = 10.0
# A crashing service restarts after 0.5, 1, 2, 4, 8 s, and at most 5 times a minute, so a
# broken one neither floods the terminal nor keeps a core busy.
RESTART_WINDOW_S = 60.0
MAX_RESTARTS_PER_WINDOW = 5
FIRST_RESTART_DELAY_S = 0.5
# Longest output line passed on whole; asyncio's default (64 KiB) is short for a traceback
# logged as one JSON line.
MAX_LINE_BYTES = 1 << 20

log = logging.getLogger("devrun")


def service_names(env: Mapping[str, str]) -> list[str]:
    override = env.get("SHARETUBE_SERVICES", "")
    names = [name.strip() for name in override.split(",") if name.strip()]
    return names or list(SERVICES)


def say(text: str) -> None:
    """One line to our stdout, in the same stream as the services' output."""
    sys.stdout.buffer.write(text.encode() + b"\n")
    sys.stdout.buffer.flush()


class Child:
    """A child process whose output is streamed to our stdout as `[name] line`."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str]) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            limit=MAX_LINE_BYTES,
            process_group=0,  # terminal Ctrl-C reaches only us; we stop children in order
        )
        assert self.proc.stdout is not None
        self._pump = asyncio.create_task(self._copy_lines(self.proc.stdout))

    async def _copy_lines(self, stream: asyncio.StreamReader) -> None:
        prefix = f"[{self.name}] ".encode()
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # asyncio drops a line longer than `limit`; say so
                line = b"(a line over 1 MiB was dropped)\n"
            if not line:
                return
            sys.stdout.buffer.write(prefix + line.rstrip(b"\n") + b"\n")
            sys.stdout.buffer.flush()

    async def wait(self) -> int:
        assert self.proc is not None and self._pump is not None
        code = await self.proc.wait()
        # A grandchild may hold the pipe open after the child exits; do not wait on it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._pump), 2)
        return code

    def send(self, sig: signal.Signals) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGKILL:  # the whole group: workers it forked go too
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)

    async def stop(self, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after `grace_s`."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self.send(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), grace_s)
        except TimeoutError:
            say(f"!!! [{self.name}] still running {grace_s:.0f} s after SIGTERM; killing it")
            self.send(signal.SIGKILL)
            await self.proc.wait()


class Service:
    """`python -m services.<name>`, restarted with a backoff whenever it exits on its own."""

    def __init__(self, name: str, env: Mapping[str, str]) -> None:
        self.name = name
        self.child = Child(name, [sys.executable, "-m", f"services.{name}"], env)
        self._stopping = asyncio.Event()
        self._restarts: collections.deque[float] = collections.deque()

    async def supervise(self) -> None:
        while not self._stopping.is_set():
            await self.child.start()
            code = await self.child.wait()
            if self._stopping.is_set():
                return
            delay = self._next_restart_delay()
            say(
                f"!!! [{self.name}] exited unexpectedly with code {code}; restarting in "
                f"{delay:.1f} s (restart {len(self._restarts)} in the last minute)"
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def _next_restart_delay(self) -> float:
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > RESTART_WINDOW_S:
            self._restarts.popleft()
        if len(self._restarts) >= MAX_RESTARTS_PER_WINDOW:
            delay = self._restarts[0] + RESTART_WINDOW_S - now  # until the oldest ages out
        else:
            delay = FIRST_RESTART_DELAY_S * 2 ** len(self._restarts)
        self._restarts.append(now + delay)
        return max(delay, 0.0)

    async def stop(self, grace_s: float) -> None:
        self._stopping.set()
        await self.child.stop(grace_s)

    def kill(self) -> None:
        self._stopping.set()
        self.child.send(signal.SIGKILL)


async def migrate(env: Mapping[str, str], stop: asyncio.Event) -> int | None:
    """Exit code of `alembic upgrade head`, or None when a stop signal came first."""
    alembic = Child("migrate", [sys.executable, "-m", "alembic", "upgrade", "head"], env)
    await alembic.start()
    done = asyncio.create_task(alembic.wait())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({done, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if done.done():
        return done.result()
    await alembic.stop(STOP_TIMEOUT_S)
    await done
    return None


def embedded_ports(environ: Mapping[str, str]) -> dict[str, int]:
    """Ports for the embedded servers other than the fixed defaults (e.g. two stacks side
    by side): SHARETUBE_NATS_PORT, SHARETUBE_POSTGRES_PORT, SHARETUBE_REDIS_PORT."""
    names = {"NATS_URL": "NATS", "DATABASE_URL": "POSTGRES", "REDIS_URL": "REDIS"}
    return {
        env_var: int(environ[f"SHARETUBE_{name}_PORT"])
        for env_var, name in names.items()
        if environ.get(f"SHARETUBE_{name}_PORT")
    }


def metrics_ports(names: list[str]) -> dict[str, int]:
    """A port of its own for each service's /metrics, /healthz, /readyz: one machine runs
    them all, where the chart gives each pod 9100. The gateway serves them on PORT."""
    return {name: free_port() for name in names if name != "gateway"}


def print_urls(
    stack_env: Mapping[str, str],
    with_services: bool,
    run_dir: Path,
    metrics: Mapping[str, int] | None = None,
) -> None:
    base = f"127.0.0.1:{os.environ.get('PORT') or 8000}"
    rows = []
    if with_services:
        rows += [
            ("homepage", f"http://{base}/"),
            ("dashboard", f"http://{base}/dashboard"),
            ("mobile remote", f"http://{base}/mobile-remote"),
            ("websocket", f"ws://{base}/ws"),
            ("gateway metrics", f"http://{base}/metrics"),
        ]
        rows += [
            (f"{name} metrics", f"http://127.0.0.1:{port}/metrics")
            for name, port in (metrics or {}).items()
        ]
    rows += [
        ("NATS", stack_env["NATS_URL"]),
        ("PostgreSQL", stack_env["DATABASE_URL"]),
        ("Redis", stack_env["REDIS_URL"]),
        ("data and logs", str(run_dir)),
    ]
    say("")
    say("ShareTube is running:" if with_services else "Infrastructure is running:")
    for label, url in rows:
        say(f"  {label:<16} {url}")
    say("Press Ctrl-C to stop.")
    say("")


async def serve(stack_env: Mapping[str, str], with_services: bool, run_dir: Path) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    services: list[Service] = []

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            hint = " (again to kill the services at once)" if services else ""
            say(f"\n{sig.name}: stopping{hint}")
            stop.set()
            return
        say(f"{sig.name} again: killing the services")
        for service in services:
            service.kill()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    env = {**os.environ, **stack_env, "PYTHONUNBUFFERED": "1"}
    code = await migrate(env, stop)
    if code is None:
        return 0
    if code != 0:
        say(f"!!! migrations failed with code {code}")
        if with_services:
            return 1
        say("!!! --no-services: keeping the servers up so you can look into it")

    tasks = []
    ports: dict[str, int] = {}
    if with_services:
        names = service_names(os.environ)
        ports = metrics_ports(names)
        services = [
            Service(
                name,
                {**env, "METRICS_HOST": "127.0.0.1", "METRICS_PORT": str(ports[name])}
                if name in ports
                else env,
            )
            for name in names
        ]
        tasks = [asyncio.create_task(service.supervise()) for service in services]
    print_urls(stack_env, with_services, run_dir, ports)
    await stop.wait()
    for service in reversed(services):
        await service.stop(STOP_TIMEOUT_S)
    await asyncio.gather(*tasks)
    return 0


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM while the servers start: unwind like Ctrl-C so LocalStack stops what it began.
    raise KeyboardInterrupt


def _hold_on(signum: int, _frame: FrameType | None) -> None:
    say(f"{signal.Signals(signum).name}: still stopping the servers, one moment")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--no-services", action="store_true", help="only the servers and the migrations"
    )
    parser.add_argument(
        "--run-dir", type=Path, default=RUN_DIR, help="where the embedded servers keep data"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    signal.signal(signal.SIGTERM, _interrupt)
    stack = LocalStack(args.run_dir, ports=embedded_ports(os.environ))
    try:
        stack.start()
    except ServerStartError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 0
    try:
        return asyncio.run(serve(stack.env, not args.no_services, args.run_dir))
    except KeyboardInterrupt:  # a signal in the instant before the loop's handlers are set
        return 0
    finally:
        # Stopping the servers takes well under a second; a second Ctrl-C must not leave a
        # PostgreSQL behind, so it waits.
        signal.signal(signal.SIGINT, _hold_on)
        signal.signal(signal.SIGTERM, _hold_on)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
