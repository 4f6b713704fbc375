"""The playback state machine: every transition, the clock arithmetic, and its invariants."""

from dataclasses import replace
from typing import get_args

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import Playback, PlaybackStatus, QueueEntry
from services.rooms import playback as pb
from services.rooms.playback import PlaybackState, Timing

T = Timing(start_buffer_ms=200, start_timeout_ms=4000)
NOW = 1_700_000_000_000  # a realistic epoch-ms clock, so anchors are far from 0
DURATION = 60_000
PLAYERS = frozenset({"gw:1", "gw:2"})
NOBODY: frozenset[str] = frozenset()


def entry(entry_id: str = "e1", duration_ms: int | None = DURATION) -> QueueEntry:
    return QueueEntry(
        id=entry_id,
        video_id="dQw4w9WgXcQ",
        title="Never Gonna Give You Up",
        duration_ms=duration_ms,
        added_by="u1",
        added_by_name="Ann",
    )


def starting(players: frozenset[str] = PLAYERS, now: int = NOW) -> PlaybackState:
    return pb.load(PlaybackState(), entry(), players, now, T)


def playing(position_ms: int = 0, now: int = NOW, rate: float = 1.0) -> PlaybackState:
    """Playing `position_ms` from `now` on (the anchor is `now`, as if the buffer had passed)."""
    state = replace(pb.load(PlaybackState(), entry(), NOBODY, now, T), rate=rate)
    return replace(
        state,
        position_ms=position_ms,
        anchor_ms=now,
        deadline_ms=now + int((DURATION - position_ms) / rate),
    )


def paused(position_ms: int = 10_000, now: int = NOW) -> PlaybackState:
    return pb.pause(playing(position_ms, now), now)


# -- the initial state and position_at ---------------------------------------------------------


def test_initial_state_is_idle_at_zero() -> None:
    state = PlaybackState()
    assert state.status == "idle"
    assert state.entry_id is None
    assert state.position_at(NOW) == 0
    assert state.deadline_ms is None


def test_position_at_before_the_anchor_is_the_anchored_position() -> None:
    state = replace(playing(5_000), anchor_ms=NOW + 200)
    assert state.position_at(NOW) == 5_000
    assert state.position_at(NOW + 200) == 5_000
    assert state.position_at(NOW + 201) == 5_001


@pytest.mark.parametrize(
    ("rate", "elapsed", "expected"),
    [(1.0, 1_000, 6_000), (2.0, 1_000, 7_000), (0.5, 1_000, 5_500), (1.5, 3, 5_004)],
)
def test_position_at_advances_with_rate(rate: float, elapsed: int, expected: int) -> None:
    assert playing(5_000, rate=rate).position_at(NOW + elapsed) == expected


def test_position_at_is_clamped_to_duration() -> None:
    state = playing(50_000)
    assert state.position_at(NOW + 9_999) == 59_999
    assert state.position_at(NOW + 10_000) == DURATION
    assert state.position_at(NOW + 3_600_000) == DURATION


def test_position_at_without_duration_is_not_clamped() -> None:
    state = replace(playing(50_000), duration_ms=None)
    assert state.position_at(NOW + 3_600_000) == 3_650_000


@pytest.mark.parametrize("status", ["idle", "starting", "paused", "midroll"])
def test_position_at_is_frozen_unless_playing(status: PlaybackStatus) -> None:
    state = replace(playing(7_000), status=status)
    assert state.position_at(NOW + 10_000) == 7_000


def test_contract_data_carries_every_public_field() -> None:
    state = playing(1_234, rate=1.25)
    data = state.contract_data()
    assert data == Playback.model_validate(data).model_dump(), "what the contract dumps"
    assert list(data) == list(Playback.model_fields)
    assert data == {
        "status": "playing",
        "entry_id": "e1",
        "video_id": "dQw4w9WgXcQ",
        "title": "Never Gonna Give You Up",
        "duration_ms": DURATION,
        "position_ms": 1_234,
        "anchor_ms": NOW,
        "rate": 1.25,
        "skip_votes": 0,
    }


# -- load --------------------------------------------------------------------------------------


def test_load_with_players_waits_in_starting() -> None:
    state = pb.load(PlaybackState(), entry(), PLAYERS, NOW, T)
    assert state.status == "starting"
    assert (state.entry_id, state.video_id, state.title, state.duration_ms) == (
        "e1",
        "dQw4w9WgXcQ",
        "Never Gonna Give You Up",
        DURATION,
    )
    assert state.position_ms == 0
    assert state.anchor_ms == 0
    assert state.ready == frozenset()
    assert state.deadline_ms == NOW + T.start_timeout_ms


def test_load_without_players_plays_at_once_after_the_buffer() -> None:
    state = pb.load(PlaybackState(), entry(), NOBODY, NOW, T)
    assert state.status == "playing"
    assert state.position_ms == 0
    assert state.anchor_ms == NOW + T.start_buffer_ms
    assert state.deadline_ms == NOW + T.start_buffer_ms + DURATION


def test_load_replaces_the_current_entry_from_zero() -> None:
    state = pb.load(playing(30_000), entry("e2", 90_000), PLAYERS, NOW + 5, T)
    assert state.status == "starting"
    assert state.entry_id == "e2"
    assert state.duration_ms == 90_000
    assert state.position_ms == 0
    assert state.deadline_ms == NOW + 5 + T.start_timeout_ms


def test_load_of_an_entry_without_duration_has_no_end_deadline() -> None:
    state = pb.load(PlaybackState(), entry(duration_ms=None), NOBODY, NOW, T)
    assert state.status == "playing"
    assert state.deadline_ms is None  # the players report `ended` instead


def test_load_keeps_the_rate() -> None:
    state = pb.load(replace(PlaybackState(), rate=2.0), entry(), NOBODY, NOW, T)
    assert state.rate == 2.0
    assert state.deadline_ms == NOW + T.start_buffer_ms + DURATION // 2


# -- mark_ready and begin_if_ready -------------------------------------------------------------


def test_ready_of_some_players_keeps_waiting() -> None:
    state = pb.mark_ready(starting(), "gw:1", "e1", PLAYERS, NOW + 100, T)
    assert state.status == "starting"
    assert state.ready == frozenset({"gw:1"})
    assert state.anchor_ms == 0


def test_ready_of_every_player_plays_anchored_after_the_buffer() -> None:
    state = pb.mark_ready(starting(), "gw:1", "e1", PLAYERS, NOW + 100, T)
    state = pb.mark_ready(state, "gw:2", "e1", PLAYERS, NOW + 300, T)
    assert state.status == "playing"
    assert state.anchor_ms == NOW + 300 + T.start_buffer_ms
    assert state.position_ms == 0
    assert state.ready == frozenset()
    assert state.deadline_ms == state.anchor_ms + DURATION
    assert state.position_at(state.anchor_ms) == 0


def test_ready_from_a_foreign_connection_does_not_start() -> None:
    state = pb.mark_ready(starting(), "gw:9", "e1", PLAYERS, NOW + 100, T)
    assert state.status == "starting"
    state = pb.mark_ready(state, "gw:1", "e1", PLAYERS, NOW + 200, T)
    assert state.status == "starting"
    state = pb.mark_ready(state, "gw:2", "e1", PLAYERS, NOW + 300, T)
    assert state.status == "playing"


def test_ready_for_another_entry_is_ignored() -> None:
    state = starting()
    assert pb.mark_ready(state, "gw:1", "e0", PLAYERS, NOW + 100, T) is state


@pytest.mark.parametrize(
    "state", [playing(), paused(), PlaybackState()], ids=["playing", "paused", "idle"]
)
def test_ready_outside_starting_is_ignored(state: PlaybackState) -> None:
    assert pb.mark_ready(state, "gw:1", "e1", PLAYERS, NOW + 100, T) is state


def test_repeated_ready_counts_once() -> None:
    state = pb.mark_ready(starting(), "gw:1", "e1", PLAYERS, NOW + 100, T)
    state = pb.mark_ready(state, "gw:1", "e1", PLAYERS, NOW + 150, T)
    assert state.status == "starting"
    assert state.ready == frozenset({"gw:1"})


def test_a_player_leaving_lets_the_rest_start() -> None:
    state = pb.mark_ready(starting(), "gw:1", "e1", PLAYERS, NOW + 100, T)
    state = pb.begin_if_ready(state, frozenset({"gw:1"}), NOW + 500, T)
    assert state.status == "playing"
    assert state.anchor_ms == NOW + 500 + T.start_buffer_ms


def test_timeout_forces_the_start_without_every_ready() -> None:
    deadline = starting().deadline_ms
    assert deadline is not None
    state = pb.begin_if_ready(starting(), PLAYERS, deadline, T, force=True)
    assert state.status == "playing"
    assert state.anchor_ms == deadline + T.start_buffer_ms
    assert state.deadline_ms == deadline + T.start_buffer_ms + DURATION


def test_begin_without_force_waits_for_missing_players() -> None:
    state = starting()
    assert pb.begin_if_ready(state, PLAYERS, NOW + 100, T) is state


@pytest.mark.parametrize(
    "state", [playing(), paused(), PlaybackState()], ids=["playing", "paused", "idle"]
)
def test_begin_outside_starting_changes_nothing(state: PlaybackState) -> None:
    assert pb.begin_if_ready(state, NOBODY, NOW + 100, T, force=True) is state


# -- play --------------------------------------------------------------------------------------


def test_play_with_nothing_loaded_is_queue_empty() -> None:
    with pytest.raises(ServiceError) as info:
        pb.play(PlaybackState(), PLAYERS, NOW, T)
    assert info.value.code is ErrorCode.QUEUE_EMPTY


def test_play_from_paused_goes_through_starting_at_the_paused_position() -> None:
    state = pb.play(paused(10_000), PLAYERS, NOW + 1_000, T)
    assert state.status == "starting"
    assert state.position_ms == 10_000
    assert state.anchor_ms == 0
    assert state.deadline_ms == NOW + 1_000 + T.start_timeout_ms


def test_play_from_paused_without_players_plays_after_the_buffer() -> None:
    state = pb.play(paused(10_000), NOBODY, NOW + 1_000, T)
    assert state.status == "playing"
    assert state.position_ms == 10_000
    assert state.anchor_ms == NOW + 1_000 + T.start_buffer_ms
    assert state.deadline_ms == state.anchor_ms + DURATION - 10_000


def test_play_from_idle_with_an_entry_starts_it() -> None:
    idle = replace(starting(), status="idle", deadline_ms=None, position_ms=2_000)
    state = pb.play(idle, PLAYERS, NOW, T)
    assert state.status == "starting"
    assert state.position_ms == 2_000


@pytest.mark.parametrize("state", [playing(), starting()], ids=["playing", "starting"])
def test_play_while_on_its_way_changes_nothing(state: PlaybackState) -> None:
    assert pb.play(state, PLAYERS, NOW + 50, T) is state


def test_play_clears_stale_ready_reports() -> None:
    state = replace(paused(), ready=frozenset({"gw:1"}))
    state = pb.play(state, PLAYERS, NOW + 10, T)
    assert state.ready == frozenset()


# -- pause -------------------------------------------------------------------------------------


def test_pause_while_playing_freezes_the_current_position() -> None:
    state = pb.pause(playing(5_000), NOW + 2_500)
    assert state.status == "paused"
    assert state.position_ms == 7_500
    assert state.anchor_ms == NOW + 2_500
    assert state.deadline_ms is None
    assert state.position_at(NOW + 60_000) == 7_500


def test_pause_inside_the_start_buffer_keeps_the_start_position() -> None:
    state = pb.load(PlaybackState(), entry(), NOBODY, NOW, T)
    state = pb.pause(state, NOW + T.start_buffer_ms // 2)
    assert state.status == "paused"
    assert state.position_ms == 0


def test_pause_while_starting_pauses_at_the_start_position() -> None:
    state = pb.seek(playing(1_000), 20_000, PLAYERS, NOW + 10, T)
    assert state.status == "starting"
    state = pb.pause(state, NOW + 20)
    assert state.status == "paused"
    assert state.position_ms == 20_000
    assert state.deadline_ms is None
    assert state.ready == frozenset()


def test_pause_at_rate_two_uses_the_rate() -> None:
    state = pb.pause(playing(1_000, rate=2.0), NOW + 1_000)
    assert state.position_ms == 3_000


@pytest.mark.parametrize("state", [paused(), PlaybackState()], ids=["paused", "idle"])
def test_pause_when_not_moving_changes_nothing(state: PlaybackState) -> None:
    assert pb.pause(state, NOW + 50) is state


# -- seek --------------------------------------------------------------------------------------


def test_seek_while_playing_restarts_through_starting() -> None:
    state = pb.seek(playing(1_000), 30_000, PLAYERS, NOW + 10, T)
    assert state.status == "starting"
    assert state.position_ms == 30_000
    assert state.anchor_ms == 0
    assert state.ready == frozenset()
    assert state.deadline_ms == NOW + 10 + T.start_timeout_ms


def test_seek_while_playing_without_players_reanchors_after_the_buffer() -> None:
    state = pb.seek(playing(1_000), 30_000, NOBODY, NOW + 10, T)
    assert state.status == "playing"
    assert state.position_ms == 30_000
    assert state.anchor_ms == NOW + 10 + T.start_buffer_ms
    assert state.deadline_ms == state.anchor_ms + DURATION - 30_000


def test_seek_while_starting_forgets_earlier_ready_reports() -> None:
    state = pb.mark_ready(starting(), "gw:1", "e1", PLAYERS, NOW + 100, T)
    state = pb.seek(state, 5_000, PLAYERS, NOW + 200, T)
    assert state.status == "starting"
    assert state.ready == frozenset()
    assert state.position_ms == 5_000
    assert state.deadline_ms == NOW + 200 + T.start_timeout_ms


def test_seek_while_paused_stays_paused_at_the_new_position() -> None:
    state = pb.seek(paused(10_000), 40_000, PLAYERS, NOW + 500, T)
    assert state.status == "paused"
    assert state.position_ms == 40_000
    assert state.anchor_ms == NOW + 500
    assert state.deadline_ms is None
    assert state.position_at(NOW + 10_000) == 40_000


def test_seek_while_idle_with_an_entry_moves_the_position_only() -> None:
    idle = pb.finish(playing(), NOW + 1_000)
    state = pb.seek(idle, 3_000, PLAYERS, NOW + 2_000, T)
    assert state.status == "idle"
    assert state.position_ms == 3_000


@pytest.mark.parametrize(
    "state", [playing(), paused(), starting()], ids=["playing", "paused", "starting"]
)
def test_seek_past_the_end_is_clamped_to_duration(state: PlaybackState) -> None:
    assert pb.seek(state, DURATION + 1, PLAYERS, NOW + 10, T).position_ms == DURATION


def test_seek_without_duration_is_not_clamped() -> None:
    state = replace(paused(), duration_ms=None)
    assert pb.seek(state, 10**8, PLAYERS, NOW, T).position_ms == 10**8


def test_seek_with_nothing_loaded_is_bad_state() -> None:
    with pytest.raises(ServiceError) as info:
        pb.seek(PlaybackState(), 1_000, PLAYERS, NOW, T)
    assert info.value.code is ErrorCode.BAD_STATE


# -- the end of a video ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "rate", "expected_after_anchor"),
    [(0, 1.0, 60_000), (45_000, 1.0, 15_000), (0, 2.0, 30_000), (10_000, 0.5, 100_000)],
)
def test_deadline_is_anchor_plus_remaining_over_rate(
    position: int, rate: float, expected_after_anchor: int
) -> None:
    paused_at = replace(paused(position), rate=rate)
    state = pb.play(paused_at, NOBODY, NOW + 1, T)
    assert state.anchor_ms == NOW + 1 + T.start_buffer_ms
    assert state.deadline_ms == state.anchor_ms + expected_after_anchor


def test_deadline_is_the_anchor_when_starting_at_the_end() -> None:
    state = pb.play(paused(DURATION), NOBODY, NOW, T)
    assert state.deadline_ms == state.anchor_ms


def test_position_at_the_deadline_is_the_end() -> None:
    state = pb.play(paused(12_345), NOBODY, NOW, T)
    assert state.deadline_ms is not None
    assert state.position_at(state.deadline_ms) == DURATION


def test_finish_stops_idle_at_the_end() -> None:
    state = pb.finish(playing(59_000), NOW + 500)
    assert state.status == "idle"
    assert state.entry_id == "e1"  # the ended video stays on screen
    assert state.position_ms == DURATION
    assert state.anchor_ms == NOW + 500
    assert state.deadline_ms is None
    assert state.ready == frozenset()


def test_finish_without_duration_stops_where_the_video_is() -> None:
    state = pb.finish(replace(playing(5_000), duration_ms=None), NOW + 2_000)
    assert state.status == "idle"
    assert state.position_ms == 7_000


def test_stop_at_end_holds_the_video_paused_at_its_end() -> None:
    state = playing(50_000)
    assert state.deadline_ms is not None
    held = pb.stop_at_end(state, state.deadline_ms)
    assert held.status == "paused"
    assert held.position_ms == DURATION
    assert held.deadline_ms is None
    assert held.entry_id == "e1"


def test_stop_at_end_after_the_deadline_does_not_overshoot() -> None:
    held = pb.stop_at_end(playing(50_000), NOW + 60_000)
    assert held.position_ms == DURATION


def test_stop_at_end_when_the_player_reported_the_end_without_duration() -> None:
    state = replace(playing(5_000), duration_ms=None, deadline_ms=None)
    held = pb.stop_at_end(state, NOW + 1_000)
    assert held.status == "paused"
    assert held.position_ms == 6_000


def test_clear_forgets_everything_but_the_rate() -> None:
    assert pb.clear(playing(1_000, rate=2.0)) == PlaybackState(rate=2.0)


# -- invariants over any command sequence ------------------------------------------------------

CONNS = ("gw:1", "gw:2", "gw:3")
VALID = set(get_args(PlaybackStatus)) - {"midroll"}  # midroll is the ad-sync's, not ours

players_st = st.frozensets(st.sampled_from(CONNS))
dt_st = st.integers(min_value=0, max_value=20_000)
command_st = st.one_of(
    st.tuples(st.just("load"), st.sampled_from(["e1", "e2", "e3"]), st.none() | dt_st),
    st.tuples(st.just("play")),
    st.tuples(st.just("pause")),
    st.tuples(st.just("seek"), st.integers(min_value=0, max_value=100_000)),
    st.tuples(st.just("ready"), st.sampled_from(CONNS), st.booleans()),
    st.tuples(st.just("timeout")),
    st.tuples(st.just("begin")),
    st.tuples(st.just("finish")),
    st.tuples(st.just("stop_at_end")),
)


def _apply(
    state: PlaybackState, cmd: tuple, players: frozenset[str], now: int, timing: Timing
) -> PlaybackState:
    name = cmd[0]
    if name == "load":
        duration = None if cmd[2] is None else cmd[2] + 1_000
        return pb.load(state, entry(cmd[1], duration), players, now, timing)
    if name == "play":
        try:
            return pb.play(state, players, now, timing)
        except ServiceError as exc:
            assert exc.code is ErrorCode.QUEUE_EMPTY
            assert state.entry_id is None
            return state
    if name == "pause":
        return pb.pause(state, now)
    if name == "seek":
        try:
            return pb.seek(state, cmd[1], players, now, timing)
        except ServiceError as exc:
            assert exc.code is ErrorCode.BAD_STATE
            assert state.entry_id is None
            return state
    if name == "ready":
        entry_id = state.entry_id if cmd[2] else "stale"
        return pb.mark_ready(state, cmd[1], entry_id or "stale", players, now, timing)
    if name == "timeout":
        return pb.begin_if_ready(state, players, now, timing, force=True)
    if name == "begin":
        return pb.begin_if_ready(state, players, now, timing)
    if name == "finish":
        return pb.finish(state, now)
    if name == "stop_at_end":
        return pb.stop_at_end(state, now)
    raise AssertionError(name)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    steps=st.lists(st.tuples(command_st, players_st, dt_st), min_size=1, max_size=30),
    buffer_ms=st.integers(min_value=0, max_value=2_000),
    timeout_ms=st.integers(min_value=1, max_value=10_000),
)
def test_invariants_hold_for_any_command_sequence(
    steps: list[tuple[tuple, frozenset[str], int]], buffer_ms: int, timeout_ms: int
) -> None:
    timing = Timing(start_buffer_ms=buffer_ms, start_timeout_ms=timeout_ms)
    state = PlaybackState()
    now = NOW
    began_at: int | None = None  # the `now` of the command that last started playback
    for cmd, players, dt in steps:
        now += dt
        before = state
        state = _apply(state, cmd, players, now, timing)
        changed = state is not before

        assert state.status in VALID
        assert state.rate == 1.0
        if state.entry_id is None:
            assert state.status == "idle"
        # Where the video is never goes negative nor past its end, now or later.
        for later in (now, now + 1, now + 10_000, now + 10**7):
            position = state.position_at(later)
            assert position >= 0
            if state.duration_ms is not None:
                assert position <= state.duration_ms
        assert state.position_at(now + 10**7) >= state.position_at(now)
        if state.duration_ms is not None:
            assert 0 <= state.position_ms <= state.duration_ms

        if state.status == "playing":
            if changed:
                began_at = now
                assert state.ready == frozenset()
                if state.duration_ms:
                    remaining = state.duration_ms - state.position_ms
                    assert state.deadline_ms == state.anchor_ms + remaining
                else:
                    assert state.deadline_ms is None
            # Every start is anchored exactly one buffer after the command that began it.
            assert began_at is not None
            assert state.anchor_ms == began_at + buffer_ms
        elif state.status == "starting":
            assert state.anchor_ms == 0
            assert state.deadline_ms is not None
            if cmd[0] in ("load", "play", "seek") and changed:
                assert state.deadline_ms == now + timeout_ms
                assert state.ready == frozenset()
            else:
                assert state.deadline_ms == before.deadline_ms
            if changed:
                # Still waiting means some player of the room has not reported ready.
                assert not players <= state.ready
        else:
            assert state.deadline_ms is None
        if cmd[0] == "pause" and before.status in ("playing", "starting"):
            # Pausing freezes the video exactly where everyone saw it.
            assert state.status == "paused"
            assert state.position_ms == before.position_at(now)
            assert state.anchor_ms == now


def test_contract_data_has_the_contracts_types() -> None:
    """A rate stored as a whole number is still a float on the wire, as the model made it."""
    data = replace(playing(1_000), rate=1).contract_data()
    assert data == Playback.model_validate(data).model_dump()
    assert isinstance(data["rate"], float) and orjson.dumps(data["rate"]) == b"1.0"
