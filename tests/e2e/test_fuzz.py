"""Property-based fuzzing of a live gateway: thousands of random and mutated frames.

A fuzzer (banned from the room, so nothing it sends may change it) sends frames one at a
time and reads the answer to each: every frame gets exactly one reply, every error carries a
code from the catalogue and no stack trace, nothing is ever `internal`. Two good members of
the room notice nothing, and afterwards every process is still running and the room works.

Bounded: a few thousand frames, sent sequentially, well under a minute.
"""

import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from services.common.contracts.commands import ROUTES
from services.common.contracts.errors import ErrorCode
from tests.support.system import System

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CODES = frozenset(code.value for code in ErrorCode)
# What a banned outsider may still do successfully: nothing that touches the room.
MAY_SUCCEED = frozenset({"time.ping", "room.create", "leave"})
VIDEO = "dQw4w9WgXcQ"

FUZZ = settings(
    deadline=None,
    database=None,  # no example database in the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Arena:
    room: str
    owner: ClientConnection
    watcher: ClientConnection
    fuzzer: ClientConnection
    sent: int = 0
    codes: Counter[str] = field(default_factory=Counter)


def _guest(system: System, name: str) -> tuple[str, str]:
    body = httpx.post(f"{system.base_url}/auth/guest", json={"name": name}, timeout=10).json()
    return body["token"], body["user"]["id"]


def _call(ws: ClientConnection, type_: str, data: dict[str, Any], room: str | None = None) -> Any:
    frame: dict[str, Any] = {"id": f"c-{type_}", "type": type_, "data": data}
    if room:
        frame["room"] = room
    ws.send(orjson.dumps(frame).decode())
    while True:
        reply = orjson.loads(ws.recv(timeout=10))
        if reply.get("re") == frame["id"]:
            assert reply["ok"], reply
            return reply["data"]
        _BACKLOG.setdefault(id(ws), []).append(reply)  # an event that came first


@pytest.fixture(scope="module")
def arena(system: System) -> Iterator[Arena]:
    owner_token, _ = _guest(system, "owner")
    watcher_token, _ = _guest(system, "watcher")
    fuzzer_token, fuzzer_id = _guest(system, "fuzzer")
    with contextlib.ExitStack() as stack:
        owner, watcher, fuzzer = (
            stack.enter_context(connect(f"{system.ws_url}?token={token}", max_size=2**22))
            for token in (owner_token, watcher_token, fuzzer_token)
        )
        room = _call(owner, "room.create", {"control_mode": "any"})["room"]["code"]
        _call(owner, "join", {"player": True}, room)
        _call(watcher, "join", {"player": True}, room)
        _call(owner, "queue.add", {"video_id": VIDEO}, room)
        _call(owner, "room.ban", {"user_id": fuzzer_id}, room)
        _drain(owner)
        _drain(watcher)
        yield Arena(room, owner, watcher, fuzzer)


# Frames a socket received while `_call` waited for its reply, for `_drain` to return.
_BACKLOG: dict[int, list[dict[str, Any]]] = {}


def _drain(ws: ClientConnection) -> list[dict[str, Any]]:
    frames = _BACKLOG.pop(id(ws), [])
    while True:
        try:
            frames.append(orjson.loads(ws.recv(timeout=0.3)))
        except TimeoutError:
            return frames


def _check(arena: Arena, raw: str | bytes, frame_id: Any, frame_type: Any) -> None:
    """Send one frame, read its one reply, hold it to the protocol."""
    arena.fuzzer.send(raw)
    arena.sent += 1
    reply = orjson.loads(arena.fuzzer.recv(timeout=15))
    assert "re" in reply and reply["ok"] in (True, False), reply
    if isinstance(frame_id, str) and 0 < len(frame_id) <= 64 and reply["re"] is not None:
        assert reply["re"] == frame_id, (raw, reply)
    if reply["ok"]:
        arena.codes["ok"] += 1
        assert frame_type in MAY_SUCCEED, (raw, reply)
        return
    error = reply["error"]
    arena.codes[error["code"]] += 1
    assert error["code"] in CODES, reply
    assert error["code"] != "internal", (raw, reply)
    message = error["message"]
    assert isinstance(message, str) and len(message) <= 300, reply
    assert "Traceback" not in message and 'File "' not in message, reply


# -- strategies ------------------------------------------------------------------------------

EDGE_TEXT = st.sampled_from(
    [
        "",
        "\u0000",
        "\u202e\u2066",  # bidi overrides and isolates
        "👩‍👩‍👧",  # zero width joiners
        "\ufeff",
        "e\u0301" * 50,
        "x" * 3000,
        "\n" * 50,
        "%s%n%x",
        "${jndi:ldap://x}",
        "<script>alert(1)</script>",
        "' OR 1=1 --",
        "../../etc/passwd",
        "𝕦𝕟𝕚𝕔𝕠𝕕𝕖",
    ]
)
HUGE = st.sampled_from(
    [2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 1e308, -0.0]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | EDGE_TEXT
    | HUGE
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def _valid_data(command: str) -> dict[str, Any]:
    return {
        "room.create": {"name": "fuzz", "visibility": "public"},
        "join": {"player": True},
        "room.settings": {"name": "n", "vote_skip_ratio": 0.5, "queue_limit_per_user": 3},
        "seek": {"position_ms": 1000},
        "ready": {"entry_id": "e1"},
        "ended": {"entry_id": "e1"},
        "queue.add": {"video_id": VIDEO, "title": "t", "duration_ms": 1000},
        "queue.remove": {"entry_id": "e1"},
        "queue.move": {"entry_id": "e1", "index": 0},
        "time.ping": {"t0": 1.5},
        "chat.send": {"text": "hi"},
        "chat.history": {"limit": 10, "before_id": "m1"},
        "chat.delete": {"message_id": "m1"},
        "room.role": {"user_id": "u1", "role": "operator"},
        "room.transfer": {"user_id": "u1"},
        "room.kick": {"user_id": "u1"},
        "room.ban": {"user_id": "u1", "banned": True},
        "room.audit": {"limit": 5, "before_id": 10},
        "rate": {"rate": 1.25},
        "ad.start": {"entry_id": "e1"},
        "ad.end": {"entry_id": "e1"},
        "admin.rooms": {"limit": 5},
    }.get(command, {})


@st.composite
def mutated_frames(draw: st.DrawFn, room: str) -> dict[str, Any]:
    """A valid frame of some command with one to three things broken (or none)."""
    command = draw(st.sampled_from(sorted({*ROUTES, "time.ping"})))
    frame: dict[str, Any] = {
        "id": draw(st.text(min_size=1, max_size=12)),
        "type": command,
        "room": room,
        "data": _valid_data(command),
    }
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        where = draw(st.sampled_from(["data", "data", "data", "id", "type", "room", "frame"]))
        if where == "data":
            data = dict(frame["data"]) if isinstance(frame["data"], dict) else {}
            keys = [*sorted(data), draw(st.text(max_size=10))]
            key = draw(st.sampled_from(keys))
            if draw(st.booleans()) and key in data:
                del data[key]
            else:
                data[key] = draw(JSON)
            frame["data"] = data if draw(st.integers(0, 9)) else draw(JSON)
        elif where == "frame":
            frame[draw(st.text(max_size=8))] = draw(JSON)
        elif where == "room":
            frame["room"] = draw(st.sampled_from([room, room.lower(), "AbC12", "x" * 17]) | JSON)
        else:
            frame[where] = draw(JSON | EDGE_TEXT)
    return frame


# -- the fuzz ----------------------------------------------------------------------------------


def test_mutated_frames_of_every_command(arena: Arena) -> None:
    @settings(FUZZ, max_examples=1500)
    @given(frame=mutated_frames(arena.room))
    def check(frame: dict[str, Any]) -> None:
        raw = json.dumps(frame, ensure_ascii=bool(hash(str(frame)) % 2))
        _check(arena, raw, frame.get("id"), frame.get("type"))

    check()


def test_arbitrary_json_values(arena: Arena) -> None:
    @settings(FUZZ, max_examples=500)
    @given(value=JSON)
    def check(value: Any) -> None:
        frame_id = value.get("id") if isinstance(value, dict) else None
        frame_type = value.get("type") if isinstance(value, dict) else None
        _check(arena, json.dumps(value), frame_id, frame_type)

    check()


def test_arbitrary_text_and_bytes(arena: Arena) -> None:
    @settings(FUZZ, max_examples=500)
    @given(
        payload=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
        | st.binary(max_size=200)
    )
    def check(payload: str | bytes) -> None:
        _check(arena, payload, None, None)

    check()


STRUCTURAL = [
    "[" * 5000 + "]" * 5000,  # nesting past the parser's limit
    '{"id": "n1", "type": "seek", "data": {"position_ms": 1e999999}}',  # overflows a double
    '{"id": "n2", "type": "seek", "data": {"position_ms": NaN}}',
    '{"id": "n3", "type": "seek", "data": {"position_ms": -0}}',
    '{"id": "n4", "type": "seek", "type": "play", "data": {}}',  # duplicate keys
    '{"id": "n5", "type": "chat.send", "data": {"text": "\\ud83d"}}',  # a lone surrogate
    '{"id": "n6", "type": "room.audit", "room": "ROOM", "data": {"before_id": 99999999999999999999}}',
    '{"id": "n7", "type": "room.audit", "room": "ROOM", "data": {"before_id": 9223372036854775807}}',
    '{"id": "n8", "type": "queue.move", "room": "ROOM", "data": {"entry_id": "e", "index": 1e3}}',
    '{"id": "n9", "type": "time.ping", "data": {"t0": 1.7976931348623157e308}}',
    '{"id": "n10", "type": "join", "room": "ROOM", "data": {"player": "yes"}}',
    '{"id": "' + "i" * 65 + '", "type": "play"}',
    '{"id": "n11", "type": "' + "t" * 33 + '"}',
    '{"id": "n12", "type": "play", "room": "ROOM", "data": null}',
    '{"id": "n13", "type": "chat.history", "room": "ROOM", "data": {"limit": true}}',
    '{"id": "n14", "type": "queue.add", "room": "ROOM", "data": {"url": "javascript:alert(1)"}}',
    '{"id": "n15", "type": "queue.add", "room": "ROOM", "data": {"video_id": "dQw4w9WgXcQ\\u0000"}}',
    '\ufeff{"id": "n16", "type": "time.ping", "data": {"t0": 1}}',  # a byte order mark
    '{"id": "n17", "type": "time.ping", "data": {"t0": 1}} trailing',
    "",
    " ",
    "null",
    '"a string"',
    "1e5",
]


def test_structural_edge_cases(arena: Arena) -> None:
    for raw in STRUCTURAL:
        raw = raw.replace("ROOM", arena.room)
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            parsed = None
        frame_id = parsed.get("id") if isinstance(parsed, dict) else None
        frame_type = parsed.get("type") if isinstance(parsed, dict) else None
        _check(arena, raw, frame_id, frame_type)


def test_after_the_fuzz_the_room_noticed_nothing_and_everyone_is_alive(
    arena: Arena, system: System
) -> None:
    print(f"\nfuzz: {arena.sent} frames; replies {dict(arena.codes.most_common())}")
    assert arena.sent >= 2000
    for ws in (arena.owner, arena.watcher):
        seen = [f for f in _drain(ws) if f.get("room") == arena.room]
        assert seen == [], f"a good member noticed the fuzz: {seen[:3]}"
    dead = [p.name for p in system.processes if p.proc.poll() is not None]
    assert not dead, f"died: {dead}"
    # The room works as before, for both members.
    _call(arena.owner, "room.settings", {"name": "after the fuzz"}, arena.room)
    for ws in (arena.owner, arena.watcher):
        events = [f for f in _drain(ws) if f.get("type") == "settings"]
        assert events and events[-1]["data"]["name"] == "after the fuzz"
    # And the fuzzer's socket is still open and served.
    assert _call(arena.fuzzer, "time.ping", {"t0": 7})["t0"] == 7
