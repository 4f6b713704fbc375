"""`--start`: a whole local ShareTube for one load run, stopped again when it ends.

NATS, PostgreSQL and Redis come from services.common.devstack (LocalStack, on free ports,
PostgreSQL without fsync unless `durable`, Redis without persistence), migrations and the
service processes
from tests.support.system, as scripts/fanout.py --start does. Every service but the janitor
(its presence timeouts would act on the bus drivers' made-up sockets; nothing here needs its
jobs), with `replicas` of each; each gateway on a port of its own.

The limits meant for people (chat messages, frames and commands per socket and per user) are
raised: a load tool measures what the services carry, not the limiters refusing it (they
still run on every command). `--stack-cpus` / `--client-cpus` pin the stack and this process
(scripts/pinning.py), and the end of the run checks that no thread strayed.
"""

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from services.common import devstack
from tests.support.system import System, migrated_servers

from .affinity import audit, pin_self, pin_tree
from .errors import LoadError
from .options import Target
from .progress import Progress

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 90.0  # a busy 2-core machine starting ~10 processes
DEFAULT_REPLICAS = {"auth": 1, "rooms": 1, "queue": 1, "chat": 1, "gateway": 1}
LOAD_ENV = {
    "LOG_LEVEL": "WARNING",
    "METRICS_PORT": "0",  # replicas must not fight over 9100
    "METRICS_HOST": "127.0.0.1",
    "CHAT_RATE_LIMIT_MESSAGES": "1000000",
    "CHAT_RATE_LIMIT_WINDOW_S": "1",
    "CONN_RATE_PER_SECOND": "100000",
    "CONN_RATE_BURST": "100000",
    "USER_RATE_PER_SECOND": "100000",
    "USER_RATE_BURST": "100000",
}


def parse_replicas(text: str | None) -> dict[str, int]:
    """`2` (two of every service), or `rooms=2,gateway=2` (the others one)."""
    replicas = dict(DEFAULT_REPLICAS)
    if not text:
        return replicas
    if text.isdigit():
        return dict.fromkeys(replicas, int(text))
    for part in text.split(","):
        name, _, count = part.partition("=")
        name = name.strip()
        if not (ROOT / "services" / name / "__main__.py").is_file() or not count.isdigit():
            raise ValueError(f"--replicas: {part!r} is not <service>=<count>")
        replicas[name] = int(count)
    return replicas


def add_durable_flag(parser: Any) -> None:
    """`--durable` on a command line that starts a stack (an argparse parser or group)."""
    parser.add_argument(
        "--durable",
        action="store_true",
        help="the started stack's PostgreSQL with fsync and synchronous commit on "
        "(default off, as in the tests)",
    )


@contextlib.contextmanager
def started_stack(
    replicas: dict[str, int],
    progress: Progress,
    stack_cpus: set[int] | None = None,
    client_cpus: set[int] | None = None,
    durable: bool = False,
) -> Iterator[tuple[Target, dict[str, object]]]:
    """The stack's Target, and what was pinned where (checked again when the block ends)."""
    if stack_cpus:
        pin_self(stack_cpus)  # everything started from here inherits the stack's CPUs
    t = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="sharetube-load-") as tmp,
        contextlib.ExitStack() as servers_up,
    ):
        root = Path(tmp)
        system: System | None = None
        failed = False
        try:
            try:
                servers = servers_up.enter_context(migrated_servers(root, durable=durable))
                env = {**os.environ, **servers.env, **LOAD_ENV}
                env["JWT_SECRET"] = secrets.token_hex(32)
                env.pop("PORT", None)
                (root / "logs").mkdir()
                system = System(env=env, log_dir=root / "logs", port=devstack.free_port())
                base_urls = _start_services(system, replicas)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                raise LoadError(f"could not start the stack: {exc}") from exc
            pids = {proc.name: proc.pid for proc in servers.started}
            pids.update({p.name: p.proc.pid for p in system.processes})
            placement: dict[str, object] = {}
            if stack_cpus:
                placement["stack_cpus"] = sorted(stack_cpus)
                placement["stack_pinned"] = pin_tree(pids.values(), stack_cpus)
            if client_cpus:
                placement["client_cpus"] = sorted(client_cpus)
                pin_self(client_cpus)
            progress.note(
                f"stack up in {time.monotonic() - t:.1f} s: {', '.join(base_urls)} "
                f"({', '.join(f'{n}={c}' for n, c in replicas.items() if c)})"
            )
            target = Target(
                base_urls=tuple(base_urls),
                nats_url=servers.env["NATS_URL"],
                redis_url=servers.env["REDIS_URL"],
                pids=pids,
                started=True,
                log_dir=root,
            )
            yield target, placement
            if stack_cpus:  # every thread still there, started since or not
                placement["stack_audit"] = audit(pids, stack_cpus)
            if client_cpus:
                placement["client_audit"] = audit(
                    {"loadtest": os.getpid()}, client_cpus, trees=False
                )
        except BaseException as exc:
            failed = isinstance(exc, Exception)
            raise
        finally:
            if system is not None:
                if failed:
                    for p in system.processes:
                        tail = "\n".join(p.log().splitlines()[-10:])
                        if tail.strip():
                            progress.note(f"--- {p.name} log (tail) ---\n{tail}")
                system.stop()


def keep_logs(root: Path, dest: Path) -> list[Path]:
    """Copy every *.log under a started stack's folder (services, NATS, PostgreSQL) to
    `dest`, keeping their relative paths, and nothing else (not the database): the stack's
    folder is removed when it stops, and a failed run is explained by its logs."""
    if dest.exists():
        shutil.rmtree(dest)
    kept = []
    for log in sorted(root.rglob("*.log")):
        if log.is_file():
            copy = dest / log.relative_to(root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, copy)
            kept.append(copy)
    return kept


def _start_services(system: System, replicas: dict[str, int]) -> list[str]:
    """auth first (the others may ask it while starting), gateways last; the gateways'
    base URLs, the first on `system.port` (System.wait_ready probes it)."""
    order = sorted((n for n in replicas if n != "gateway"), key=lambda n: n != "auth")
    base_urls: list[str] = []
    for name in [*order, "gateway"]:
        for n in range(replicas.get(name, 0)):
            extra = None
            if name == "gateway":
                port = system.port if n == 0 else devstack.free_port()
                base_urls.append(f"http://127.0.0.1:{port}")
                extra = {"PORT": str(port)}
            system.start_service(name, extra)
    if not base_urls:
        raise RuntimeError("a stack needs at least one gateway")
    system.wait_ready(timeout=READY_TIMEOUT_S)
    for url in base_urls[1:]:
        _wait_ready(url)
    return base_urls


def _wait_ready(base_url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"gateway {base_url} not ready")
