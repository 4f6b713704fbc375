"""Hand-encoded server frames parse back with the `websockets` library, at every length form."""

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from services.gateway.wire import text_frame


def parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        return done.value
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_a_text_frame_parses_back_whole(size: int) -> None:
    payload = (b'{"v":1}' * (size // 7 + 1))[:size]
    frame = parse(text_frame(payload))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert bytes(frame.data) == payload
