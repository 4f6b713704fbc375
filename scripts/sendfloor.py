"""The floor under fan-out on this machine: one process on the stack's CPU writes one small
frame to each of N loopback TCP sockets, and a reader on the client's CPU takes the kernel's
receive timestamp of each (SO_TIMESTAMPNS), as scripts/fanout.py does.

No application runs: a plain `socket.send` per socket, so what it measures is the kernel's
cost of N sends on loopback, where the receive side's TCP processing also runs on the
sender's CPU. `make bench` prints it next to the fan-out rows: the part of "seek → last of N
members" that no server design on one core avoids.

    python scripts/sendfloor.py --clients 1000 --rounds 40
    python scripts/sendfloor.py --clients 1000 --congestion reno   # the sender's TCP_CONGESTION
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import select
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from loadtest.stats import describe  # noqa: E402
from scripts.epollws import SO_TIMESTAMPNS  # noqa: E402
from scripts.fanout import raise_fd_limit  # noqa: E402

# A text frame of a typical `playback` event's size (scripts/fanout.py sees ~230 bytes).
FRAME = b"\x81\x7e\x00\xe6" + b"x" * 230
ROUND_GAP_S = 0.05  # between rounds: each round starts on drained sockets


def _sender(
    port: int,
    clients: int,
    rounds: int,
    cpus: set[int] | None,
    congestion: str | None,
    ready: Any,
    out: Any,
) -> None:
    """Accept `clients` sockets, then send FRAME to each, `rounds` times; report each
    round's start (wall clock ns, comparable to the kernel's receive stamps) and the
    congestion control the sockets used."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    listener = socket.create_server(("127.0.0.1", port), backlog=4096)
    ready.set()
    socks = []
    for _ in range(clients):
        sock, _addr = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if congestion:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion.encode())
        socks.append(sock)
    in_use = socks[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16) if socks else b""
    time.sleep(0.3)
    starts = []
    for _ in range(rounds):
        started = time.time_ns()
        for sock in socks:
            sock.send(FRAME)
        starts.append(started)
        time.sleep(ROUND_GAP_S)
    out.send((starts, in_use.rstrip(b"\0").decode()))
    for sock in socks:
        sock.close()
    listener.close()


def measure_send_floor(
    clients: int,
    rounds: int,
    stack_cpus: set[int] | None,
    client_cpus: set[int] | None,
    congestion: str | None = None,
) -> dict[str, Any]:
    """Time from the first `send` of a round to the kernel's receive stamp on the last of
    `clients` sockets, over `rounds` rounds (ms). `congestion` names the sender's TCP
    congestion control (the system's default when None)."""
    raise_fd_limit(clients)
    own_cpus = os.sched_getaffinity(0)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    try:
        return _measure(clients, rounds, stack_cpus, congestion)
    finally:
        os.sched_setaffinity(0, own_cpus)


def _measure(
    clients: int, rounds: int, stack_cpus: set[int] | None, congestion: str | None
) -> dict[str, Any]:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    receiver, sender_end = ctx.Pipe(duplex=False)
    sender = ctx.Process(
        target=_sender,
        args=(port, clients, rounds, stack_cpus, congestion, ready, sender_end),
        daemon=True,
    )
    sender.start()
    try:
        if not ready.wait(10):
            raise RuntimeError("the sender did not start")
        lasts = _read_rounds(port, clients, rounds)
        if not receiver.poll(30):
            raise RuntimeError("the sender sent no timings")
        starts, in_use = receiver.recv()
    finally:
        sender.join(10)
        if sender.is_alive():
            sender.kill()
    latencies = [(last - start) / 1e6 for start, last in zip(starts, lasts, strict=False)]
    return {
        "ok": len(latencies) == rounds,
        "clients": clients,
        "rounds": len(latencies),
        "frame_bytes": len(FRAME),
        "congestion": in_use,
        "to_last_socket_ms": describe(latencies),
        "per_socket_us": round(1000 * sorted(latencies)[len(latencies) // 2] / clients, 2)
        if latencies
        else None,
    }


def _read_rounds(port: int, clients: int, rounds: int) -> list[int]:
    """Connect `clients` sockets and return, per round, the latest kernel receive stamp."""
    poller = select.epoll()
    socks: dict[int, socket.socket] = {}
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        poller.register(sock.fileno(), select.EPOLLIN)
        socks[sock.fileno()] = sock
    lasts: list[int] = []
    latest, received = 0, 0
    deadline = time.monotonic() + 30 + rounds * (ROUND_GAP_S + clients * 50e-6)
    try:
        while len(lasts) < rounds and time.monotonic() < deadline:
            for fd, _mask in poller.poll(0.2):
                try:
                    data, ancillary, _flags, _addr = socks[fd].recvmsg(65536, 64)
                except BlockingIOError:
                    continue
                for _level, _kind, stamp in ancillary:
                    seconds, nanos = struct.unpack("qq", stamp[:16])
                    latest = max(latest, seconds * 1_000_000_000 + nanos)
                received += len(data) // len(FRAME)
                if received >= clients:
                    lasts.append(latest)
                    latest, received = 0, received - clients
    finally:
        poller.close()
        for sock in socks.values():
            sock.close()
    return lasts


def main(argv: list[str] | None = None) -> int:
    from scripts.pinning import parse_cpus

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--stack-cpus", type=parse_cpus, default=None, help="e.g. 0")
    parser.add_argument("--client-cpus", type=parse_cpus, default=None, help="e.g. 1")
    parser.add_argument(
        "--congestion", default=None, help="the sender's TCP congestion control, e.g. reno"
    )
    args = parser.parse_args(argv)
    result = measure_send_floor(
        args.clients, args.rounds, args.stack_cpus, args.client_cpus, args.congestion
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
