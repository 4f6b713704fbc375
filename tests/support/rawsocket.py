"""A WebSocket client written by hand, for clients that misbehave on purpose: it joins and
then never reads (a stuck tab) or never answers a ping (a laptop gone to sleep). Client
libraries read and answer pings in the background, so they cannot play these parts."""

import base64
import os
import socket


def open_and_send(port: int, token: str, frame: bytes, rcvbuf: int | None = None) -> socket.socket:
    """Upgrade to a WebSocket on /ws, send one text frame (< 126 bytes), return the socket."""
    sock = socket.create_connection(("127.0.0.1", port))
    if rcvbuf is not None:  # a small receive buffer fills fast when the client stops reading
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert b" 101 " in response.split(b"\r\n")[0]
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(frame))
    sock.sendall(bytes([0x81, 0x80 | len(frame)]) + mask + masked)
    return sock
