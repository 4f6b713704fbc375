"""The contracts: every model round-trips, refuses unknown fields and exports a JSON Schema."""

import importlib
import pkgutil
from typing import Any, get_args

import orjson
import pytest
from pydantic import ValidationError

import services.common.contracts as contracts_pkg
from services.common.contracts import subjects
from services.common.contracts.base import Contract
from services.common.contracts.commands import (
    GATEWAY_COMMANDS,
    MAX_POSITION_MS,
    ROUTES,
    EntryRef,
    Join,
    NoData,
    QueueAdd,
    QueueMove,
    RoomCreate,
    Seek,
    SettingsUpdate,
    TimePing,
)
from services.common.contracts.envelope import (
    MAX_REQUEST_ID,
    AccessQuery,
    AccessReply,
    AdvanceReply,
    AdvanceRequest,
    CommandEnvelope,
    DisconnectNotice,
    GuestRequest,
    TokenReply,
)
from services.common.contracts.errors import DESCRIPTIONS, CloseCode, ErrorCode, ServiceError
from services.common.contracts.events import EVENT_TYPES, EventFrame, EventType, encode, subject_for
from services.common.contracts.models import (
    ChatMessage,
    Member,
    Playback,
    QueueEntry,
    RoomInfo,
    RoomSettings,
    Snapshot,
    UserRef,
    Versions,
)

USER = UserRef(id="u1", name="Ann", admin=True)
ENTRY = QueueEntry(
    id="q1",
    video_id="dQw4w9WgXcQ",
    title="Ünïcödé 😀",
    duration_ms=212_000,
    thumbnail="https://i.ytimg.com/vi/dQw4w9WgXcQ/hqdefault.jpg",
    added_by="u1",
    added_by_name="Ann",
)
SETTINGS = RoomSettings(
    name="Friday night", visibility="public", control_mode="operators", ad_sync="off"
)
PLAYBACK = Playback(
    status="playing",
    entry_id="q1",
    video_id="dQw4w9WgXcQ",
    title="t",
    duration_ms=212_000,
    position_ms=1_000,
    anchor_ms=1_700_000_000_000,
    rate=1.5,
)
MESSAGE = ChatMessage(id="m1", user_id="u1", name="Ann", text="hi 👋", at_ms=1_700_000_000_000)

# One fully populated instance of every contract model; a new model must be added here.
SAMPLES: dict[type[Contract], Contract] = {
    NoData: NoData(),
    RoomCreate: RoomCreate(name="Room", visibility="public", control_mode="any"),
    Join: Join(player=True),
    SettingsUpdate: SettingsUpdate(
        name="New",
        visibility="private",
        control_mode="owner_only",
        ad_sync="operators_only",
        auto_advance=False,
    ),
    Seek: Seek(position_ms=MAX_POSITION_MS),
    EntryRef: EntryRef(entry_id="q1"),
    QueueAdd: QueueAdd(url="https://youtu.be/dQw4w9WgXcQ", title="t", duration_ms=1, next=True),
    QueueMove: QueueMove(entry_id="q1", index=3),
    TimePing: TimePing(t0=1_700_000_000_000.25),
    CommandEnvelope: CommandEnvelope(
        id="c7", user=USER, room="AbC123", conn="gw-1:3", data={"position_ms": 5, "x": [1, None]}
    ),
    AccessQuery: AccessQuery(room="AbC123", user_id="u1"),
    AccessReply: AccessReply(member=True, role="operator", banned=False, settings=SETTINGS),
    AdvanceRequest: AdvanceRequest(room="AbC123", after_entry_id="q0"),
    AdvanceReply: AdvanceReply(entry=ENTRY),
    DisconnectNotice: DisconnectNotice(room="AbC123", conn="gw-1:3"),
    GuestRequest: GuestRequest(name="Ann"),
    TokenReply: TokenReply(token="a.b.c", user=USER),
    EventFrame: EventFrame(type="playback", room="AbC123", v=42, data=PLAYBACK.model_dump()),
    UserRef: USER,
    RoomInfo: RoomInfo(code="AbC123", owner_id="u1", created_at_ms=1_700_000_000_000),
    RoomSettings: SETTINGS,
    Member: Member(user_id="u1", name="Ann", role="owner", online=True, player=False),
    QueueEntry: ENTRY,
    Playback: PLAYBACK,
    ChatMessage: MESSAGE,
    Versions: Versions(playback=4, members=3, settings=1, queue=2, chat=5),
    Snapshot: Snapshot(
        room=RoomInfo(code="AbC123", owner_id="u1", created_at_ms=1),
        settings=SETTINGS,
        members=[Member(user_id="u1", name="Ann", role="owner", online=True, player=True)],
        queue=[ENTRY],
        playback=PLAYBACK,
        chat=[MESSAGE],
        versions=Versions(playback=4),
        v=4,
    ),
}


def _all_contract_models() -> set[type[Contract]]:
    for module in pkgutil.iter_modules(contracts_pkg.__path__):
        importlib.import_module(f"{contracts_pkg.__name__}.{module.name}")
    found: set[type[Contract]] = set()
    todo = [Contract]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub.__module__.startswith(contracts_pkg.__name__) and sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def test_every_contract_model_has_a_sample() -> None:
    assert _all_contract_models() == set(SAMPLES)


@pytest.mark.parametrize("model", SAMPLES.values(), ids=lambda m: type(m).__name__)
def test_round_trip_through_json(model: Contract) -> None:
    cls = type(model)
    assert cls.model_validate_json(model.model_dump_json()) == model
    assert cls.model_validate(orjson.loads(orjson.dumps(model.model_dump(mode="json")))) == model


@pytest.mark.parametrize("model", SAMPLES.values(), ids=lambda m: type(m).__name__)
def test_unknown_fields_are_refused(model: Contract) -> None:
    cls = type(model)
    with pytest.raises(ValidationError) as info:
        cls.model_validate({**model.model_dump(), "surprise": 1})
    assert info.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize("model", SAMPLES.values(), ids=lambda m: type(m).__name__)
def test_models_are_frozen(model: Contract) -> None:
    field = next(iter(type(model).model_fields), None)
    if field is None:
        assert type(model).model_config["frozen"] is True
        return
    with pytest.raises(ValidationError):
        setattr(model, field, getattr(model, field))


@pytest.mark.parametrize("cls", sorted(SAMPLES, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_every_model_exports_a_closed_json_schema(cls: type[Contract]) -> None:
    schema = cls.model_json_schema()
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    orjson.dumps(schema)  # JSON all the way down, for the extension's and portals' checks


# -- routes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ROUTES))
def test_every_route_has_a_data_schema_and_a_subject(name: str) -> None:
    route = ROUTES[name]
    schema = route.data.model_json_schema()
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert route.subject == f"st.{route.service}.cmd.{route.command}"
    assert route.service in {"rooms", "queue"}
    assert 0 < route.timeout_s <= 10
    assert issubclass(route.data, Contract)


def test_the_design_wire_commands_are_all_routed() -> None:
    wire = set(
        "room.create join leave room.settings room.sync play pause seek skip restart ready"
        " queue.add queue.remove queue.move queue.load".split()
    )
    assert wire <= set(ROUTES)
    assert GATEWAY_COMMANDS == {"time.ping"}
    assert not GATEWAY_COMMANDS & set(ROUTES)


def test_only_room_create_needs_no_room() -> None:
    assert {name for name, route in ROUTES.items() if not route.needs_room} == {"room.create"}


def test_route_subjects_are_unique() -> None:
    assert len({route.subject for route in ROUTES.values()}) == len(ROUTES)


# -- validation at the edges -------------------------------------------------------------------

INVALID: list[tuple[type[Contract], dict[str, Any]]] = [
    (Seek, {}),
    (Seek, {"position_ms": -1}),
    (Seek, {"position_ms": MAX_POSITION_MS + 1}),
    (Seek, {"position_ms": "soon"}),
    (Seek, {"position_ms": 1.5}),
    (QueueAdd, {}),
    (QueueAdd, {"video_id": "dQw4w9WgXcQ", "url": "https://youtu.be/dQw4w9WgXcQ"}),
    (QueueAdd, {"video_id": "dQw4w9WgXcQ", "duration_ms": -1}),
    (QueueAdd, {"url": "u" * 2049}),
    (QueueMove, {"entry_id": "q1", "index": -1}),
    (QueueMove, {"entry_id": "", "index": 0}),
    (EntryRef, {"entry_id": ""}),
    (EntryRef, {"entry_id": "x" * 65}),
    (RoomCreate, {"name": ""}),
    (RoomCreate, {"name": "n" * 81}),
    (RoomCreate, {"visibility": "secret"}),
    (RoomCreate, {"control_mode": "everyone"}),
    (SettingsUpdate, {"ad_sync": "sometimes"}),
    (TimePing, {}),
    (TimePing, {"t0": "now"}),
    (GuestRequest, {"name": ""}),
    (GuestRequest, {"name": "n" * 41}),
    (CommandEnvelope, {"id": "", "user": {"id": "u", "name": "n"}}),
    (CommandEnvelope, {"id": "x" * (MAX_REQUEST_ID + 1), "user": {"id": "u", "name": "n"}}),
    (EventFrame, {"type": "gossip", "room": "AbC123", "v": 1, "data": None}),
    (Member, {"user_id": "u", "name": "n", "role": "king", "online": True, "player": False}),
    (Playback, {"status": "buffering"}),
]


@pytest.mark.parametrize(
    ("cls", "data"), INVALID, ids=[f"{cls.__name__}-{i}" for i, (cls, _data) in enumerate(INVALID)]
)
def test_invalid_data_is_refused(cls: type[Contract], data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        cls.model_validate(data)


def test_defaults() -> None:
    assert RoomCreate() == RoomCreate(name=None, visibility="private", control_mode="owner_only")
    assert Join().player is False
    assert Playback().model_dump() == dict(
        status="idle",
        entry_id=None,
        video_id=None,
        title=None,
        duration_ms=None,
        position_ms=0,
        anchor_ms=0,
        rate=1.0,
    )
    assert RoomSettings(name="r").ad_sync == "pause_all"
    assert QueueAdd(video_id="dQw4w9WgXcQ").next is False
    assert CommandEnvelope(id="1", user=USER).data == {}


# -- errors ------------------------------------------------------------------------------------


def test_every_error_code_is_described() -> None:
    assert set(DESCRIPTIONS) == set(ErrorCode)
    assert all(text.strip() for text in DESCRIPTIONS.values())


def test_error_codes_are_stable_snake_case_strings() -> None:
    for code in ErrorCode:
        assert code.value == code.name.lower()


@pytest.mark.parametrize("code", list(ErrorCode))
def test_service_error_defaults_to_the_description(code: ErrorCode) -> None:
    error = ServiceError(code)
    assert error.to_dict() == {"code": code.value, "message": DESCRIPTIONS[code]}
    assert ServiceError(code, "custom").to_dict() == {"code": code.value, "message": "custom"}


def test_close_codes() -> None:
    codes = {name: value for name, value in vars(CloseCode).items() if not name.startswith("_")}
    assert codes["GOING_AWAY"] == 1001
    assert len(set(codes.values())) == len(codes)
    assert all(4000 <= value <= 4999 for name, value in codes.items() if name != "GOING_AWAY")


# -- events ------------------------------------------------------------------------------------


def test_event_types_match_the_literal() -> None:
    assert EVENT_TYPES == get_args(EventType)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_encoded_events_are_valid_event_frames(event_type: EventType) -> None:
    raw = encode(event_type, "AbC123", 7, {"x": "😀"})
    frame = EventFrame.model_validate_json(raw)
    assert frame == EventFrame(type=event_type, room="AbC123", v=7, data={"x": "😀"})
    assert subject_for(event_type, "AbC123") == f"st.room.AbC123.evt.{event_type}"


# -- subjects ----------------------------------------------------------------------------------


def test_command_subjects() -> None:
    assert subjects.command("rooms", "seek") == "st.rooms.cmd.seek"
    assert subjects.service_commands("queue") == "st.queue.cmd.>"
    assert subjects.command_name("rooms", "st.rooms.cmd.seek") == "seek"
    assert subjects.command_name("auth", subjects.command("auth", "guest")) == "guest"


def test_room_event_subjects() -> None:
    assert subjects.room_event("AbC123", "chat") == "st.room.AbC123.evt.chat"
    assert subjects.room_events("AbC123") == "st.room.AbC123.evt.>"
    assert subjects.ROOM_EVENTS_WILDCARD == "st.room.*.evt.>"


@pytest.mark.parametrize(
    ("subject", "template"),
    [
        ("st.room.AbC123.evt.playback", "st.room.{room}.evt.playback"),
        ("st.room.XyZ789.evt.>", "st.room.{room}.evt.>"),
        ("st.room.*.evt.>", "st.room.{room}.evt.>"),
        ("st.rooms.cmd.seek", "st.rooms.cmd.seek"),
        ("st.queue.cmd.add", "st.queue.cmd.add"),
        ("st.room", "st.room"),
        ("_INBOX.abc", "_INBOX.abc"),
    ],
)
def test_subject_template_hides_room_codes(subject: str, template: str) -> None:
    assert subjects.subject_template(subject) == template


def test_every_route_subject_is_its_own_template() -> None:
    for route in ROUTES.values():
        assert subjects.subject_template(route.subject) == route.subject
