"""Room events written straight to members' descriptors (hub.RoomChannel._fan_out): pipes
stand in for sockets, so each test sees exactly which bytes took which way."""

import fcntl
import os
from collections.abc import Iterator

import pytest

from services.common.contracts.models import UserRef
from services.gateway.connection import Connection
from services.gateway.wire import text_frame

from .test_connection import FakeSocket
from .test_connection import fan_out as room

ROOM = "AbC123"
BOUND = 1 << 20


class PipeSocket(FakeSocket):
    """A socket whose descriptor is a pipe's write end: direct writes land in the pipe,
    writes through the transport in `written`."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self.fd = fd

    def direct_fd(self) -> int:
        return self.fd


@pytest.fixture
def pipes() -> Iterator[list[tuple[int, int]]]:
    opened: list[tuple[int, int]] = []
    yield opened
    for read_end, write_end in opened:
        for fd in (read_end, write_end):
            try:
                os.close(fd)
            except OSError:
                pass  # closed by the test


def member(pipes: list[tuple[int, int]], name: str) -> tuple[Connection, PipeSocket, int]:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    pipes.append((read_end, write_end))
    sock = PipeSocket(write_end)
    conn = Connection(sock, UserRef(id=name, name=name), f"gw:{name}", BOUND)
    return conn, sock, read_end


def event(v: int, pad: int = 0) -> bytes:
    return b'{"type":"playback","room":"%s","v":%d,"pad":"%s"}' % (ROOM.encode(), v, b"x" * pad)


def drain(read_end: int) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = os.read(read_end, 1 << 16)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def test_events_go_straight_to_every_members_descriptor(pipes: list[tuple[int, int]]) -> None:
    (a, a_sock, a_read), (b, b_sock, b_read) = member(pipes, "a"), member(pipes, "b")
    channel = room(a, b)
    for v in (1, 2, 3):
        channel.on_event(v, text_frame(event(v)))
    expected = b"".join(text_frame(event(v)) for v in (1, 2, 3))
    assert drain(a_read) == drain(b_read) == expected
    assert a_sock.written == b_sock.written == []  # nothing through the transport


def test_a_member_that_left_gets_nothing_more(pipes: list[tuple[int, int]]) -> None:
    (a, _, a_read), (b, _, b_read) = member(pipes, "a"), member(pipes, "b")
    channel = room(a, b)
    channel.on_event(1, text_frame(event(1)))
    channel.remove_member(b)
    channel.on_event(2, text_frame(event(2)))
    assert drain(b_read) == text_frame(event(1))
    assert drain(a_read) == text_frame(event(1)) + text_frame(event(2))


def test_a_closed_socket_gets_no_event(pipes: list[tuple[int, int]]) -> None:
    (a, a_sock, a_read), (b, _, b_read) = member(pipes, "a"), member(pipes, "b")
    channel = room(a, b)
    channel.on_event(1, text_frame(event(1)))
    a.drop(4000, "bye")  # still a member until the hub hears of it
    channel.on_event(2, text_frame(event(2)))
    assert drain(a_read) == text_frame(event(1))
    assert a_sock.written == [] and a_sock.closes == [(4000, "bye")]
    assert drain(b_read) == text_frame(event(1)) + text_frame(event(2))


def test_a_reused_descriptor_number_gets_nothing(pipes: list[tuple[int, int]]) -> None:
    """The socket went and its descriptor was closed; a new socket can get the same number.
    The room must not write to it."""
    a, _, a_read = member(pipes, "a")
    channel = room(a)
    channel.on_event(1, text_frame(event(1)))
    assert drain(a_read) == text_frame(event(1))
    number = a.fd
    a.stop_direct()  # as ClientSocket.connection_lost does before closing its descriptor
    stranger_read, stranger_write = os.pipe()
    pipes.append((stranger_read, stranger_write))
    os.set_blocking(stranger_read, False)
    os.dup2(stranger_write, number)  # the number now names another pipe
    channel.on_event(2, text_frame(event(2)))
    assert drain(stranger_read) == b""


def test_bytes_queued_in_the_transport_keep_their_place(pipes: list[tuple[int, int]]) -> None:
    a, a_sock, a_read = member(pipes, "a")
    channel = room(a)
    channel.on_event(1, text_frame(event(1)))
    a_sock.stalled = True  # the transport keeps what is written through it
    a.send("a reply")  # left queued in the transport
    channel.on_event(2, text_frame(event(2)))  # must go after it: through the transport
    assert drain(a_read) == text_frame(event(1))
    assert a_sock.written == [text_frame(b"a reply"), text_frame(event(2))]
    a_sock.stalled, a_sock.backlog = False, 0  # the client caught up
    channel.on_event(3, text_frame(event(3)))  # still through the transport: it learns so
    channel.on_event(4, text_frame(event(4)))  # and straight to the socket again
    assert a_sock.written[-1] == text_frame(event(3))
    assert drain(a_read) == text_frame(event(4))


@pytest.mark.parametrize("free", [0, 5000], ids=["full", "part"])
def test_what_the_kernel_does_not_take_goes_through_the_transport(
    pipes: list[tuple[int, int]], free: int
) -> None:
    """A frame the descriptor takes none of, or only part of: the rest is queued in the
    transport, and later events follow it there, so the bytes stay in order."""
    a, a_sock, a_read = member(pipes, "a")
    write_end = a.fd
    capacity = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
    os.write(write_end, b"-" * (capacity - free))  # a reader that fell behind
    a_sock.stalled = True  # what reaches the transport stays queued there
    channel = room(a)
    big = text_frame(event(1, pad=20_000))  # past PIPE_BUF: the kernel may take a part
    channel.on_event(1, big)
    channel.on_event(2, text_frame(event(2)))
    direct = drain(a_read)[capacity - free :]
    assert direct + b"".join(a_sock.written) == big + text_frame(event(2))
    assert (0 < len(direct) <= free) if free else direct == b""  # a pipe takes whole pages
    assert a.queued
