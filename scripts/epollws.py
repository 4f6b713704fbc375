"""A lean WebSocket client for benchmarks: many non-blocking sockets, one epoll loop.

No asyncio and no task per socket: the caller's thread calls `poll`, which reads each
readable socket with recvmsg. Every socket has SO_TIMESTAMPNS on, so the kernel says when the
bytes reached the socket (CLOCK_REALTIME, comparable with time.time_ns()): how long this
process takes to get round to a socket does not count in a latency measured that way. A read
that brings no timestamp is stamped with time.time_ns() instead and counted (`user_stamped`).

What it speaks of RFC 6455: the HTTP/1.1 upgrade (checking Sec-WebSocket-Accept), masked
client frames, server frames with 7-, 16- and 64-bit lengths parsed incrementally from a
per-socket buffer, fragmented messages (continuation frames, control frames in between),
ping (answered with a pong carrying the same payload), close (echoed, then the socket is
closed). No extensions (permessage-deflate is not offered), no TLS.

A large frame the handler can judge by its first bytes (`on_head`) is not buffered: reads are
small (SMALL_READ) unless the frame being buffered is known to need more, so the head comes
in first, and the rest of a judged frame is discarded in the kernel (recv with MSG_TRUNC
copies nothing on TCP).
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import select
import socket
import struct
import time
from typing import Protocol

# Not exported by Python before 3.12; this is the value on x86-64 and arm64 (asm-generic).
SO_TIMESTAMPNS: int = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
TIMESPEC = struct.Struct("@ll")  # struct timespec: tv_sec, tv_nsec (native longs)
ANC_SIZE = socket.CMSG_SPACE(TIMESPEC.size)
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10

READ_SIZE = 256 * 1024  # one receive buffer, shared by every socket (one thread)
# A read takes this much unless the rest of a frame being buffered is known to be longer:
# small reads let a large frame be judged by its head before its body is copied in.
SMALL_READ = 8 * 1024
READS_PER_EVENT = 8  # reads of one socket per readiness before the next socket's turn
HEAD_MIN = 4096  # a frame at least this long may be judged by its head ...
HEAD_SIZE = 128  # ... which is this many bytes of its payload
MAX_MESSAGE = 64 * 1024 * 1024
MAX_HANDSHAKE = 16 * 1024

CONNECTING, UPGRADING, OPEN, CLOSED = "connecting", "upgrading", "open", "closed"

_IN = select.EPOLLIN
_OUT = select.EPOLLOUT


class Handler(Protocol):
    def on_open(self, conn: Conn) -> None:
        """The upgrade succeeded: frames may be sent."""

    def on_text(self, conn: Conn, payload: bytes, ts_ns: int) -> None:
        """A whole text (or binary) message; `ts_ns` is when its last byte arrived."""

    def on_head(self, conn: Conn, head: bytes, length: int, ts_ns: int) -> bool:
        """The first HEAD_SIZE bytes of a frame of `length` bytes not all here yet. True:
        done with it, the rest is dropped unread; False: it is buffered for on_text."""

    def on_close(self, conn: Conn) -> None:
        """The socket is gone (close frame, EOF or error), after it was open."""


class Conn:
    """One client socket. Subclass it (with __slots__) to keep per-socket state."""

    __slots__ = (
        "buf",
        "close_code",
        "close_reason",
        "error",
        "fd",
        "frag",
        "frag_op",
        "key",
        "need",
        "out",
        "sent_close",
        "skip",
        "sock",
        "state",
    )

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.fd = -1
        self.state = CLOSED
        self.buf = bytearray()
        self.out = bytearray()  # bytes the kernel would not take yet
        self.skip = 0  # bytes of a frame judged by its head still to discard
        self.need = 0  # bytes still missing from the frame being buffered
        self.frag: bytearray | None = None  # a fragmented message so far
        self.frag_op = 0
        self.key = b""
        self.sent_close = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.error = ""

    @property
    def open(self) -> bool:
        return self.state == OPEN


def mask(payload: bytes, key: bytes) -> bytes:
    """XOR `payload` with the repeated 4-byte `key`, as one big-integer operation."""
    n = len(payload)
    if not n:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes, key: bytes | None = None) -> bytes:
    """One final frame from a client: masked, with a 7-, 16- or 64-bit length."""
    key = os.urandom(4) if key is None else key
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + key + mask(payload, key)


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + WS_GUID).digest())


def upgrade_request(host: str, port: int, target: str, key: bytes) -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class EpollClient:
    """Sockets driven by one epoll loop, each calling `handler` with what it receives."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.epoll = select.epoll()
        self.conns: dict[int, Conn] = {}
        self._rbuf = bytearray(READ_SIZE)
        self._rview = memoryview(self._rbuf)
        self._small = self._rview[:SMALL_READ]
        self._requests: dict[int, bytes] = {}  # fd -> upgrade request, while connecting
        self.kernel_stamped = 0  # reads that brought an SCM_TIMESTAMPNS
        self.user_stamped = 0  # reads that did not: stamped with time.time_ns()
        self.last_kernel = False  # whether the latest read's timestamp is the kernel's
        self.bytes_in = 0
        self.bytes_skipped = 0
        self.pongs_sent = 0

    # --- opening --------------------------------------------------------------------------

    def connect(self, conn: Conn, host: str, port: int, target: str) -> None:
        """Start opening `conn` to ws://host:port`target`; `poll` carries it on to OPEN (or
        CLOSED with `conn.error`)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Conn.__init__(conn)  # a retry starts afresh (the subclass's state stays)
        conn.sock, conn.fd, conn.state = sock, sock.fileno(), CONNECTING
        conn.key = base64.b64encode(os.urandom(16))
        self.conns[conn.fd] = conn
        self._requests[conn.fd] = upgrade_request(host, port, target, conn.key)
        err = sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            self._fail(conn, f"connect: {os.strerror(err)}")
            return
        self.epoll.register(conn.fd, _OUT)

    def _connected(self, conn: Conn) -> None:
        assert conn.sock is not None
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(conn, f"connect: {os.strerror(err)}")
            return
        conn.state = UPGRADING
        self.epoll.modify(conn.fd, _IN)
        self._write(conn, self._requests.pop(conn.fd))

    def _upgrade(self, conn: Conn) -> None:
        """Read the HTTP answer; anything after its blank line is already WebSocket."""
        assert conn.sock is not None
        try:
            n, anc, _flags, _addr = conn.sock.recvmsg_into([self._rview], ANC_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(conn, f"upgrade: {exc}")
            return
        if not n:
            self._fail(conn, "upgrade: connection closed")
            return
        conn.buf += self._rview[:n]
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.buf) > MAX_HANDSHAKE:
                self._fail(conn, "upgrade: no end of headers")
            return
        head = bytes(conn.buf[:end]).decode("latin-1").split("\r\n")
        del conn.buf[: end + 4]
        status = head[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            self._fail(conn, f"upgrade refused: {head[0]}")
            return
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept", "").encode() != accept_key(conn.key):
            self._fail(conn, "upgrade: wrong Sec-WebSocket-Accept")
            return
        if headers.get("sec-websocket-extensions"):
            self._fail(conn, "upgrade: an extension was not asked for")
            return
        conn.state = OPEN
        self.handler.on_open(conn)
        if conn.buf:
            self._frames(conn, self._stamp(anc))

    def _fail(self, conn: Conn, error: str) -> None:
        conn.error = error
        self._requests.pop(conn.fd, None)
        self._drop(conn)

    # --- the loop -------------------------------------------------------------------------

    def poll(self, timeout: float) -> int:
        """Wait up to `timeout` seconds for sockets to be ready, and serve them all; returns
        how many were."""
        try:
            ready = self.epoll.poll(timeout)
        except InterruptedError:
            return 0
        conns = self.conns
        for fd, mask_ in ready:
            conn = conns.get(fd)
            if conn is None:
                continue
            state = conn.state
            if state == OPEN:
                if mask_ & _OUT:
                    self._flush(conn)
                if mask_ & ~_OUT and conn.state == OPEN:
                    self._read(conn)
            elif state == CONNECTING:
                self._connected(conn)
            elif state == UPGRADING:
                if mask_ & _OUT:
                    self._flush(conn)
                if mask_ & ~_OUT and conn.state == UPGRADING:
                    self._upgrade(conn)
        return len(ready)

    def _stamp(self, anc: list[tuple[int, int, bytes]]) -> int:
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= 16:
                sec, nsec = TIMESPEC.unpack_from(data)
                self.kernel_stamped += 1
                self.last_kernel = True
                return sec * 1_000_000_000 + nsec
        self.user_stamped += 1
        self.last_kernel = False
        return time.time_ns()

    def _read(self, conn: Conn) -> None:
        sock = conn.sock
        assert sock is not None
        for _ in range(READS_PER_EVENT):
            try:
                if conn.skip:
                    # The rest of a frame judged by its head: discarded by the kernel.
                    n = sock.recv_into(self._rbuf, min(conn.skip, READ_SIZE), socket.MSG_TRUNC)
                    if not n:
                        self._gone(conn, 1006, "EOF")
                        return
                    conn.skip -= n
                    self.bytes_skipped += n
                    continue
                view = self._small
                if conn.need > SMALL_READ:
                    view = self._rview[: min(conn.need, READ_SIZE)]
                n, anc, _flags, _addr = sock.recvmsg_into([view], ANC_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                self._gone(conn, 1006, str(exc))
                return
            if not n:
                self._gone(conn, 1006, "EOF")
                return
            self.bytes_in += n
            conn.buf += view[:n]
            self._frames(conn, self._stamp(anc))
            if conn.state != OPEN or n < len(view):
                return

    def _frames(self, conn: Conn, ts: int) -> None:
        """Parse and hand on every whole frame in `conn.buf`; keep the partial rest."""
        buf = conn.buf
        size = len(buf)
        p = 0
        conn.need = 0
        while size - p >= 2:
            b0 = buf[p]
            b1 = buf[p + 1]
            n = b1 & 0x7F
            h = p + 2
            if n == 126:
                if size - p < 4:
                    break
                n = (buf[h] << 8) | buf[h + 1]
                h += 2
            elif n == 127:
                if size - p < 10:
                    break
                n = int.from_bytes(buf[h : h + 8], "big")
                h += 8
            if b1 & 0x80 or b0 & 0x70 or n > MAX_MESSAGE:
                self._protocol_error(conn, "masked, reserved bits or too long")
                return
            op = b0 & 0x0F
            end = h + n
            if (
                n >= HEAD_MIN
                and b0 & 0x80
                and op in (OP_TEXT, OP_BINARY)
                and conn.frag is None
                and size - h >= HEAD_SIZE
                and self.handler.on_head(conn, bytes(buf[h : h + HEAD_SIZE]), n, ts)
            ):
                if end > size:
                    conn.skip = end - size
                    p = size
                    break
                p = end
                continue
            if end > size:
                conn.need = end - size
                break
            payload = bytes(buf[h:end])
            p = end
            if op >= 8:
                self._control(conn, op, payload)
                if conn.state != OPEN:
                    return
                continue
            if op == OP_CONT:
                if conn.frag is None:
                    self._protocol_error(conn, "continuation without a first frame")
                    return
                conn.frag += payload
                if len(conn.frag) > MAX_MESSAGE:
                    self._protocol_error(conn, "message too long")
                    return
                if not b0 & 0x80:
                    continue
                payload, conn.frag = bytes(conn.frag), None
            elif conn.frag is not None:
                self._protocol_error(conn, "data frame inside a fragmented message")
                return
            elif not b0 & 0x80:
                conn.frag, conn.frag_op = bytearray(payload), op
                continue
            self.handler.on_text(conn, payload, ts)
            if conn.state != OPEN:
                return
        if p:
            del buf[:p]

    def _control(self, conn: Conn, op: int, payload: bytes) -> None:
        if op == OP_PING:
            self.send(conn, OP_PONG, payload)
            self.pongs_sent += 1
        elif op == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            reason = payload[2:].decode("utf-8", "replace")
            if not conn.sent_close:
                self.send(conn, OP_CLOSE, payload[:2])
                conn.sent_close = True
            self._gone(conn, code, reason)
        elif op != OP_PONG:
            self._protocol_error(conn, f"unknown opcode {op}")

    def _protocol_error(self, conn: Conn, why: str) -> None:
        if not conn.sent_close:
            self.send(conn, OP_CLOSE, (1002).to_bytes(2, "big"))
            conn.sent_close = True
        self._gone(conn, 1002, f"client: {why}")

    # --- sending --------------------------------------------------------------------------

    def send(self, conn: Conn, opcode: int, payload: bytes) -> bool:
        """Queue one masked frame; False when the socket is no longer open."""
        if conn.state != OPEN or conn.sent_close:
            return False
        self._write(conn, client_frame(opcode, payload))
        return conn.state == OPEN

    def send_text(self, conn: Conn, payload: bytes) -> bool:
        return self.send(conn, OP_TEXT, payload)

    def send_raw(self, conn: Conn, frame: bytes) -> bool:
        """Write a frame built beforehand with client_frame (so a timestamp taken just
        before this call excludes the framing)."""
        if conn.state != OPEN or conn.sent_close:
            return False
        self._write(conn, frame)
        return conn.state == OPEN

    def _write(self, conn: Conn, data: bytes) -> None:
        if conn.out:
            conn.out += data
            return
        assert conn.sock is not None
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._gone(conn, 1006, str(exc))
            return
        if sent < len(data):
            conn.out += data[sent:]
            self.epoll.modify(conn.fd, _IN | _OUT)

    def _flush(self, conn: Conn) -> None:
        assert conn.sock is not None
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            return
        except OSError as exc:
            self._gone(conn, 1006, str(exc))
            return
        del conn.out[:sent]
        if not conn.out:
            self.epoll.modify(conn.fd, _IN)

    # --- closing --------------------------------------------------------------------------

    def _gone(self, conn: Conn, code: int, reason: str) -> None:
        was_open = conn.state == OPEN
        if conn.close_code is None:
            conn.close_code, conn.close_reason = code, reason
        self._drop(conn)
        if was_open:
            self.handler.on_close(conn)

    def abort(self, conn: Conn, reason: str) -> None:
        """Close the socket at once, without a close frame (e.g. it never opened)."""
        if conn.state == OPEN:
            self._gone(conn, 1006, reason)
        elif conn.state != CLOSED:
            self._fail(conn, reason)

    def _drop(self, conn: Conn) -> None:
        conn.state = CLOSED
        if conn.sock is None:
            return
        self.conns.pop(conn.fd, None)
        try:
            self.epoll.unregister(conn.fd)
        except (OSError, ValueError):
            pass  # never registered (connect failed at once)
        if conn.out:
            try:  # the close frame, at least, if the kernel takes it
                conn.sock.send(conn.out)
            except OSError:
                pass
        conn.sock.close()
        conn.sock = None

    def close(self, conns: list[Conn], wait_s: float = 5.0, code: int = 1000) -> None:
        """Send a close frame on each open socket, wait (bounded) for the answers, then
        close whatever is left."""
        for conn in conns:
            if conn.state == OPEN and not conn.sent_close:
                self.send(conn, OP_CLOSE, code.to_bytes(2, "big"))
                conn.sent_close = True
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(c.state == OPEN for c in conns):
            self.poll(0.05)
        for conn in conns:
            if conn.state != CLOSED:
                self._gone(conn, 1000, "closed by client")

    def shutdown(self) -> None:
        for conn in list(self.conns.values()):
            self._drop(conn)
        self.epoll.close()
