"""The contracts: every model round-trips, refuses unknown fields and exports a JSON Schema."""

import importlib
import pkgutil
from typing import Any, get_args

import orjson
import pytest
from pydantic import ValidationError

import services.common.contracts as contracts_pkg
from services.common.contracts import commands as cmd
from services.common.contracts import envelope as bus_msg
from services.common.contracts import events as evt
from services.common.contracts import models as mdl
from services.common.contracts import subjects
from services.common.contracts.base import Contract
from services.common.contracts.commands import (
    GATEWAY_COMMANDS,
    MAX_POSITION_MS,
    ROUTES,
    DriftReport,
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
ANN = Member(
    user_id="u1", name="Ann", role="owner", online=True, player=True, joined_at_ms=1_700_000_000_000
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
    DriftReport: DriftReport(drift_ms=-12.5, rate=1.02),
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
    Member: ANN,
    mdl.MembersDelta: mdl.MembersDelta(changed=[ANN], gone=["u2"]),
    QueueEntry: ENTRY,
    Playback: PLAYBACK,
    ChatMessage: MESSAGE,
    Versions: Versions(playback=4, members=3, settings=1, queue=2, chat=5),
    Snapshot: Snapshot(
        room=RoomInfo(code="AbC123", owner_id="u1", created_at_ms=1),
        settings=SETTINGS,
        members=[ANN],
        queue=[ENTRY],
        playback=PLAYBACK,
        chat=[MESSAGE],
        versions=Versions(playback=4),
        v=4,
    ),
}

# Roles, room policy, ads, directory, audit, stats (issue 3).
SAMPLES.update(
    {
        cmd.TargetUser: cmd.TargetUser(user_id="u2"),
        cmd.RoleChange: cmd.RoleChange(user_id="u2", role="operator"),
        cmd.BanChange: cmd.BanChange(user_id="u2", banned=False),
        cmd.AdReport: cmd.AdReport(entry_id="q1"),
        cmd.RateChange: cmd.RateChange(rate=1.5),
        cmd.AuditQuery: cmd.AuditQuery(limit=10, before_id=99),
        mdl.NowPlaying: mdl.NowPlaying(status="playing", video_id="dQw4w9WgXcQ", title="t"),
        mdl.PublicRoom: mdl.PublicRoom(
            code="AbC123",
            name="Friday night",
            members_online=3,
            now_playing=mdl.NowPlaying(status="idle"),
        ),
        mdl.AuditEntry: mdl.AuditEntry(
            id=7,
            at_ms=1_700_000_000_000,
            action="room.kick",
            user_id="u1",
            name="Ann",
            target_id="u2",
            detail={"why": ["spam", 1]},
        ),
        bus_msg.DirectoryQuery: bus_msg.DirectoryQuery(limit=20, offset=40),
        bus_msg.DirectoryReply: bus_msg.DirectoryReply(
            rooms=[
                mdl.PublicRoom(
                    code="AbC123",
                    name="n",
                    members_online=1,
                    now_playing=mdl.NowPlaying(status="paused", video_id="dQw4w9WgXcQ"),
                )
            ],
            next_offset=20,
        ),
        bus_msg.EvictNotice: bus_msg.EvictNotice(
            room="AbC123", user_id="u2", conns=["gw-1:3", "gw-2:9"], reason="banned"
        ),
        bus_msg.StatsReply: bus_msg.StatsReply(
            service="rooms",
            instance="host-42",
            process={"messages_per_s": 1.5},
            shared={"rooms": 3.0},
        ),
        evt.Eviction: evt.Eviction(reason="kicked"),
        evt.EvictedFrame: evt.EvictedFrame(
            type="evicted", room="AbC123", data=evt.Eviction(reason="kicked")
        ),
    }
)

# Chat and sign-in (issue 3).
SAMPLES.update(
    {
        cmd.ChatSend: cmd.ChatSend(text="hi 👋\nsecond line"),
        cmd.ChatHistory: cmd.ChatHistory(before_id="m9", limit=100),
        cmd.ChatDelete: cmd.ChatDelete(message_id="m1"),
        mdl.ChatDeleted: mdl.ChatDeleted(deleted="m1"),
        bus_msg.GoogleStart: bus_msg.GoogleStart(
            redirect_uri="https://abc.chromiumapp.org/",
            upgrade_token="a.b.c",
            login_hint="ann@example.com",
        ),
        bus_msg.GoogleStartReply: bus_msg.GoogleStartReply(
            url="https://accounts.google.com/o/oauth2/v2/auth?state=s", state="s"
        ),
        bus_msg.GoogleFinish: bus_msg.GoogleFinish(state="s", code="c", error="access_denied"),
        bus_msg.GoogleFinishReply: bus_msg.GoogleFinishReply(
            redirect_uri="https://abc.chromiumapp.org/",
            token="a.b.c",
            user=USER,
            error=ErrorCode.UNAUTHORIZED,
            message="no",
        ),
        bus_msg.LogoutRequest: bus_msg.LogoutRequest(token="a.b.c"),
        bus_msg.SignoutNotice: bus_msg.SignoutNotice(sid="s1"),
    }
)

# The admin dashboard (issue 6).
_ADMIN_AUDIT = mdl.RoomAuditEntry(
    id=8, room="AbC123", at_ms=1_700_000_000_000, action="join", user_id="u1", name="Ann"
)
_ADMIN_ROOM = mdl.AdminRoom(
    code="AbC123",
    name="Friday night",
    visibility="private",
    control_mode="any",
    owner_id="u1",
    created_at_ms=1_700_000_000_000,
    members=[ANN],
    members_online=1,
    now_playing=mdl.NowPlaying(status="playing", video_id="dQw4w9WgXcQ", title="t"),
    queue_length=3,
)
SAMPLES.update(
    {
        cmd.AdminRoomsQuery: cmd.AdminRoomsQuery(limit=20, audit_limit=5),
        mdl.AdminRoom: _ADMIN_ROOM,
        mdl.RoomAuditEntry: _ADMIN_AUDIT,
        mdl.AdminRoomsReply: mdl.AdminRoomsReply(rooms=[_ADMIN_ROOM], audit=[_ADMIN_AUDIT]),
        bus_msg.QueueLengthsQuery: bus_msg.QueueLengthsQuery(rooms=["AbC123", "XyZ789"]),
        bus_msg.QueueLengthsReply: bus_msg.QueueLengthsReply(lengths={"AbC123": 3}),
    }
)

# Presence, upkeep and gateway hints (issue 4).
SAMPLES.update(
    {
        bus_msg.PresenceGateways: bus_msg.PresenceGateways(gateways=["gw-a1b2c3"]),
        bus_msg.PresenceSweep: bus_msg.PresenceSweep(
            dead_gateways=["gw-a1b2c3"], away_before_ms=1_700_000_000_000, limit=50
        ),
        bus_msg.PresenceSweepReply: bus_msg.PresenceSweepReply(marked_away=2, removed=1),
        bus_msg.CloseIdleRooms: bus_msg.CloseIdleRooms(empty_before_ms=1, limit=10),
        bus_msg.ClosedRooms: bus_msg.ClosedRooms(rooms=["AbC123"]),
        bus_msg.RetentionRequest: bus_msg.RetentionRequest(kind="messages", before_ms=5),
        bus_msg.PurgeOrphans: bus_msg.PurgeOrphans(limit=10),
        bus_msg.RowsDeleted: bus_msg.RowsDeleted(deleted=3),
        evt.ReconnectHint: evt.ReconnectHint(reason="shutdown", within_ms=2000),
        evt.ReconnectFrame: evt.ReconnectFrame(
            type="reconnect", data=evt.ReconnectHint(reason="shutdown", within_ms=2000)
        ),
        evt.Resync: evt.Resync(reason="bus_reconnected"),
        evt.ResyncFrame: evt.ResyncFrame(
            type="resync", room="AbC123", data=evt.Resync(reason="bus_reconnected")
        ),
        bus_msg.SequenceCheck: bus_msg.SequenceCheck(room="AbC123", seen_v=41),
        bus_msg.SequenceCheckReply: bus_msg.SequenceCheckReply(v=43, resynced=True),
        bus_msg.RoomVersions: bus_msg.RoomVersions(rooms=["AbC123", "XyZ789"]),
        bus_msg.RoomVersionsReply: bus_msg.RoomVersionsReply(versions={"AbC123": 43}),
    }
)


def test_gateway_hints_match_their_models() -> None:
    hint = evt.ReconnectFrame.model_validate_json(evt.reconnect(1500))
    assert hint.data.within_ms == 1500
    assert "v" not in orjson.loads(evt.reconnect(1500)), "outside every room's sequence"
    assert evt.ResyncFrame.model_validate_json(evt.resync("AbC123")).room == "AbC123"
    lost = evt.ResyncFrame.model_validate_json(evt.events_lost("AbC123", 42))
    assert (lost.v, lost.data.reason) == (42, "events_lost"), "in the room's sequence"


def test_member_away_and_joined_at_are_additive() -> None:
    """Older clients and stored snapshots without `away` or `joined_at_ms` still validate."""
    member = Member.model_validate(
        {"user_id": "u", "name": "n", "role": "member", "online": False, "player": False}
    )
    assert member.away is False and member.joined_at_ms is None


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
    assert route.service in {"rooms", "queue", "chat"}
    assert 0 < route.timeout_s <= 10
    assert issubclass(route.data, Contract)


def test_the_design_wire_commands_are_all_routed() -> None:
    wire = set(
        "room.create join leave room.settings room.sync play pause seek skip restart ready"
        " queue.add queue.remove queue.move queue.load".split()
    )
    assert wire <= set(ROUTES)
    assert GATEWAY_COMMANDS == {"time.ping", "drift.report"}
    assert not GATEWAY_COMMANDS & set(ROUTES)


def test_only_room_create_needs_no_room() -> None:
    assert {name for name, route in ROUTES.items() if not route.needs_room} == {
        "room.create",
        "admin.rooms",  # across rooms, for site admins
    }


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
    (DriftReport, {}),
    (DriftReport, {"drift_ms": 600_001}),
    (DriftReport, {"drift_ms": 1, "rate": 0}),
    (DriftReport, {"drift_ms": "NaN"}),
    (DriftReport, {"drift_ms": 1, "room": "x"}),
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
        skip_votes=0,
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
    # RFC 6455's own codes where one means what we mean; applications' (4000-4999) otherwise.
    standard = {
        "GOING_AWAY": 1001,
        "INTERNAL": 1011,
        "SERVICE_RESTART": 1012,
        "TRY_AGAIN_LATER": 1013,
    }
    assert all(codes[name] == value for name, value in standard.items())
    assert all(4000 <= value <= 4999 for name, value in codes.items() if name not in standard)


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
