"""scripts/epollws.py, the benchmark's lean WebSocket client, against a server played by hand
on a loopback socket: the upgrade, frame lengths, fragments, ping, close, kernel timestamps."""

import base64
import hashlib
import socket
import struct
import time
from collections.abc import Callable, Iterator

import pytest

from scripts import epollws
from scripts.epollws import OPEN, Conn, EpollClient

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Recorder:
    """A handler that keeps what it is given; judges frames starting `skip:` by their head."""

    def __init__(self) -> None:
        self.opened: list[Conn] = []
        self.texts: list[tuple[bytes, int]] = []
        self.heads: list[tuple[bytes, int]] = []
        self.closed: list[Conn] = []

    def on_open(self, conn: Conn) -> None:
        self.opened.append(conn)

    def on_text(self, conn: Conn, payload: bytes, ts_ns: int) -> None:
        self.texts.append((payload, ts_ns))

    def on_head(self, conn: Conn, head: bytes, length: int, ts_ns: int) -> bool:
        if head.startswith(b"skip:"):
            self.heads.append((head, length))
            return True
        return False

    def on_close(self, conn: Conn) -> None:
        self.closed.append(conn)


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", first, n) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


def read_client_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One frame from the client, which must be masked; (opcode, unmasked payload)."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "client closed"
            data += chunk
        return data

    b0, b1 = exactly(2)
    assert b0 & 0x80, "final frame"
    assert b1 & 0x80, "client frames are masked"
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", exactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", exactly(8))
    key = exactly(4)
    data = exactly(n)
    return b0 & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(data))


class Peer:
    """The client, its one socket, and the server's end of it."""

    def __init__(self, client: EpollClient, recorder: Recorder, conn: Conn, server: socket.socket):
        self.client, self.recorder, self.conn, self.server = client, recorder, conn, server

    def until(self, done: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "timed out"
            self.client.poll(0.01)


def handshake(listener: socket.socket, response: Callable[[bytes], bytes], extra: bytes = b""):
    recorder = Recorder()
    client = EpollClient(recorder)
    conn = Conn()
    host, port = listener.getsockname()
    client.connect(conn, host, port, "/ws?token=t")
    server, _ = listener.accept()
    server.settimeout(5)
    peer = Peer(client, recorder, conn, server)
    request = b""
    while b"\r\n\r\n" not in request:
        peer.client.poll(0.01)
        request += server.recv(4096)
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    server.sendall(response(key) + extra)
    return peer, request


def accept(key: bytes) -> bytes:
    digest = base64.b64encode(hashlib.sha1(key + GUID).digest())
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + digest + b"\r\n\r\n"
    )


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


@pytest.fixture
def peer(listener: socket.socket) -> Iterator[Peer]:
    # A frame right behind the 101, in the same segment: it must not be lost.
    p, request = handshake(listener, accept, extra=server_frame(1, b"hello"))
    assert request.startswith(b"GET /ws?token=t HTTP/1.1\r\n")
    assert b"Upgrade: websocket" in request and b"Sec-WebSocket-Version: 13" in request
    p.until(lambda: bool(p.recorder.texts))
    yield p
    p.client.shutdown()
    p.server.close()


def test_upgrade_then_a_frame_in_the_same_segment(peer: Peer) -> None:
    assert peer.conn.state == OPEN
    assert peer.recorder.opened == [peer.conn]
    assert [t for t, _ in peer.recorder.texts] == [b"hello"]


def test_client_frames_are_masked_with_every_length(peer: Peer) -> None:
    for size in (0, 5, 125, 126, 300, 65535, 65536, 70000):
        payload = bytes(i % 251 for i in range(size))
        assert peer.client.send_text(peer.conn, payload)
        peer.until(lambda: not peer.conn.out)
        assert read_client_frame(peer.server) == (1, payload)
    frame = epollws.client_frame(1, b"pre-built")
    assert peer.client.send_raw(peer.conn, frame)
    assert read_client_frame(peer.server) == (1, b"pre-built")


@pytest.mark.parametrize("size", [5, 125, 126, 300, 65535, 65536, 70000])
def test_server_frames_of_7_16_and_64_bit_lengths_arrive_whole_even_in_pieces(
    peer: Peer, size: int
) -> None:
    payload = bytes(65 + i % 26 for i in range(size))
    data = server_frame(1, payload) + server_frame(1, b"next")
    for cut in range(0, len(data), 997):  # a few bytes at a time, each piece read on its own
        peer.server.sendall(data[cut : cut + 997])
        peer.client.poll(0.01)
    peer.until(lambda: len(peer.recorder.texts) == 3)
    assert [t for t, _ in peer.recorder.texts[1:]] == [payload, b"next"]


def test_fragments_with_a_ping_between_are_one_message_and_the_pong_echoes(peer: Peer) -> None:
    peer.server.sendall(
        server_frame(1, b"hel", fin=False)
        + server_frame(9, b"are you there")
        + server_frame(0, b"lo ", fin=False)
        + server_frame(0, b"world")
    )
    peer.until(lambda: len(peer.recorder.texts) == 2)
    assert peer.recorder.texts[1][0] == b"hello world"
    assert read_client_frame(peer.server) == (10, b"are you there")
    assert peer.client.pongs_sent == 1


def test_a_large_frame_judged_by_its_head_is_dropped_unread(peer: Peer) -> None:
    big = b"skip:" + b"x" * 300_000
    peer.server.sendall(server_frame(1, big[:2000]))  # not large: whole, through on_text
    peer.server.sendall(server_frame(1, big[:5000]))  # large, here whole: judged all the same
    peer.server.sendall(server_frame(1, big) + server_frame(1, b"after"))
    peer.until(lambda: peer.recorder.texts[-1][0] == b"after")
    assert [len(t) for t, _ in peer.recorder.texts] == [5, 2000, 5]
    head = big[: epollws.HEAD_SIZE]
    assert peer.recorder.heads == [(head, 5000), (head, len(big))]
    assert peer.client.bytes_skipped > 250_000  # the rest never came into this process
    assert peer.client.bytes_in < 50_000


def test_close_is_echoed_with_its_code(peer: Peer) -> None:
    peer.server.sendall(server_frame(8, (1001).to_bytes(2, "big") + b"bye"))
    peer.until(lambda: bool(peer.recorder.closed))
    assert (peer.conn.close_code, peer.conn.close_reason) == (1001, "bye")
    assert peer.conn.state == epollws.CLOSED
    assert read_client_frame(peer.server) == (8, (1001).to_bytes(2, "big"))


def test_eof_without_close_frame_is_1006(peer: Peer) -> None:
    peer.server.close()
    peer.until(lambda: bool(peer.recorder.closed))
    assert peer.conn.close_code == 1006


def test_arrival_times_come_from_the_kernel(peer: Peer) -> None:
    # Linux turns receive timestamps on a moment after the first socket asks (a deferred
    # static key): the first reads of a fresh system may come without one.
    deadline = time.monotonic() + 5
    while not peer.client.last_kernel:
        assert time.monotonic() < deadline, "no SCM_TIMESTAMPNS on a TCP socket"
        count = len(peer.recorder.texts)
        peer.server.sendall(server_frame(1, b"warm-up"))
        peer.until(lambda count=count: len(peer.recorder.texts) > count)
    count = len(peer.recorder.texts)
    before = time.time_ns()
    peer.server.sendall(server_frame(1, b"stamped"))
    time.sleep(0.05)  # the client reads late: the stamp must not move
    peer.until(lambda: len(peer.recorder.texts) > count)
    payload, ts = peer.recorder.texts[-1]
    assert payload == b"stamped" and peer.client.last_kernel
    assert before < ts < before + 40_000_000


def test_a_refused_upgrade_fails_the_socket(listener: socket.socket) -> None:
    p, _ = handshake(listener, lambda _key: b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    p.until(lambda: p.conn.state == epollws.CLOSED)
    assert "403" in p.conn.error
    assert not p.recorder.opened
    p.client.shutdown()
    p.server.close()


def test_a_wrong_accept_key_fails_the_socket(listener: socket.socket) -> None:
    p, _ = handshake(listener, lambda _key: accept(b"another key"))
    p.until(lambda: p.conn.state == epollws.CLOSED)
    assert "Sec-WebSocket-Accept" in p.conn.error
    p.client.shutdown()
    p.server.close()


def test_a_masked_server_frame_is_a_protocol_error(peer: Peer) -> None:
    peer.server.sendall(b"\x81\x85" + b"\x00" * 4 + b"hello")
    peer.until(lambda: bool(peer.recorder.closed))
    assert peer.conn.close_code == 1002
    assert read_client_frame(peer.server) == (8, (1002).to_bytes(2, "big"))


def test_mask_is_its_own_inverse() -> None:
    key = b"\x01\x02\x03\x04"
    data = bytes(range(256)) * 3 + b"odd"
    assert epollws.mask(epollws.mask(data, key), key) == data
    assert epollws.mask(b"\x00\x00\x00\x00\x00", key) == key + key[:1]
    assert epollws.mask(b"", key) == b""
