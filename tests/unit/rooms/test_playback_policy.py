"""The playback state machine's room policies: ads and midroll, synchronized rate, votes."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import AdSyncPolicy
from services.rooms import playback as pb
from services.rooms.playback import PlaybackState, Timing

from .test_playback import DURATION, NOBODY, NOW, PLAYERS, T, entry, paused, playing, starting

A, B = "gw:1", "gw:2"


def midroll(conn: str = A, position_ms: int = 10_000) -> PlaybackState:
    return pb.ad_start(playing(position_ms), conn, "pause_all", NOW, T)


# -- ad_counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "privileged", "counts"),
    [
        ("off", True, False),
        ("off", False, False),
        ("pause_all", True, True),
        ("pause_all", False, True),
        ("operators_only", True, True),
        ("operators_only", False, False),
        ("starting_only", True, True),
        ("starting_only", False, True),
    ],
)
def test_ad_counts(policy: AdSyncPolicy, privileged: bool, counts: bool) -> None:
    assert pb.ad_counts(policy, privileged) is counts


# -- pause_all / operators_only: midroll -------------------------------------------------------


@pytest.mark.parametrize("policy", ["pause_all", "operators_only"])
def test_an_ad_while_playing_holds_the_room_in_midroll_at_the_shared_position(
    policy: AdSyncPolicy,
) -> None:
    state = pb.ad_start(playing(10_000), A, policy, NOW + 2_500, T)
    assert state.status == "midroll"
    assert state.position_ms == 12_500
    assert state.anchor_ms == NOW + 2_500
    assert state.ads == {A}
    assert state.deadline_ms == NOW + 2_500 + T.ad_max_wait_ms
    assert state.contract_data()["status"] == "midroll"


def test_the_midroll_holds_until_every_ad_ended_then_starts_together() -> None:
    state = midroll(A)
    state = pb.ad_start(state, B, "pause_all", NOW + 100, T)
    assert state.ads == {A, B}
    assert state.deadline_ms == NOW + T.ad_max_wait_ms, "a second ad does not extend the wait"
    state = pb.ad_end(state, A, PLAYERS, NOW + 5_000, T)
    assert state.status == "midroll"
    state = pb.ad_end(state, B, PLAYERS, NOW + 6_000, T)
    assert state.status == "starting"  # every player loads the position and reports ready
    assert state.position_ms == 10_000
    assert state.deadline_ms == NOW + 6_000 + T.start_timeout_ms
    for conn in PLAYERS:
        state = pb.mark_ready(state, conn, "e1", PLAYERS, NOW + 6_100, T)
    assert state.status == "playing"
    assert state.position_ms == 10_000
    assert state.anchor_ms == NOW + 6_100 + T.start_buffer_ms


def test_the_midroll_resumes_at_once_when_no_player_waits_to_load() -> None:
    state = pb.ad_end(midroll(A), A, NOBODY, NOW + 5_000, T)
    assert state.status == "playing"
    assert state.position_ms == 10_000
    assert state.anchor_ms == NOW + 5_000 + T.start_buffer_ms


def test_an_ad_end_from_a_player_without_a_counted_ad_changes_nothing() -> None:
    state = midroll(A)
    assert pb.ad_end(state, B, PLAYERS, NOW + 1, T) is state
    assert pb.ad_end(playing(), A, PLAYERS, NOW, T) == playing()


def test_a_repeated_ad_start_changes_nothing() -> None:
    state = midroll(A)
    assert pb.ad_start(state, A, "pause_all", NOW + 10, T) is state


def test_the_ad_wait_expires_so_a_stuck_player_cannot_hold_the_room() -> None:
    state = midroll(A)
    due = pb.expire(state, PLAYERS, NOW + T.ad_max_wait_ms, T)
    assert due.status == "starting"
    assert due.ads == frozenset()
    assert due.position_ms == 10_000
    # and the start after it waits the normal few seconds at most
    late = pb.expire(due, PLAYERS, NOW + T.ad_max_wait_ms + T.start_timeout_ms, T)
    assert late.status == "playing"


def test_a_player_leaving_during_its_ad_ends_the_midroll() -> None:
    state = pb.drop_player(midroll(A), A, frozenset({B}), NOW + 3_000, T)
    assert state.status == "starting"
    assert state.ads == frozenset()


def test_off_ignores_ads() -> None:
    for state in (playing(), starting(), paused()):
        assert pb.ad_start(state, A, "off", NOW, T) == state


def test_pause_seek_and_play_during_a_midroll() -> None:
    state = midroll(A)
    assert pb.play(state, PLAYERS, NOW + 1, T) is state, "the midroll resumes by itself"
    sought = pb.seek(state, 30_000, PLAYERS, NOW + 2, T)
    assert (sought.status, sought.position_ms, sought.ads) == ("midroll", 30_000, {A})
    held = pb.pause(state, NOW + 3)
    assert (held.status, held.position_ms, held.deadline_ms) == ("paused", 10_000, None)
    # the ad is remembered: the next start waits for it, with the ad's wait
    again = pb.play(held, PLAYERS, NOW + 4, T)
    assert again.status == "starting"
    assert again.deadline_ms == NOW + 4 + T.ad_max_wait_ms
    again = pb.mark_ready(again, A, "e1", PLAYERS, NOW + 5, T)
    again = pb.mark_ready(again, B, "e1", PLAYERS, NOW + 5, T)
    assert again.status == "starting", "A is still in its ad"
    assert pb.ad_end(again, A, PLAYERS, NOW + 6, T).status == "playing"


def test_a_new_entry_forgets_the_old_ones_ads() -> None:
    state = pb.load(midroll(A), entry("e2"), PLAYERS, NOW + 1, T)
    assert state.status == "starting"
    assert state.ads == frozenset()
    assert state.deadline_ms == NOW + 1 + T.start_timeout_ms


def test_changing_the_policy_forgets_the_ads() -> None:
    state = pb.forget_ads(midroll(A), PLAYERS, NOW + 1, T)
    assert (state.status, state.ads) == ("starting", frozenset())
    assert pb.forget_ads(playing(), PLAYERS, NOW, T) == playing()


# -- starting_only (and any policy while starting) ---------------------------------------------


def test_starting_only_ignores_ads_while_playing() -> None:
    assert pb.ad_start(playing(), A, "starting_only", NOW, T) == playing()


@pytest.mark.parametrize("policy", ["starting_only", "pause_all", "operators_only"])
def test_an_ad_while_starting_delays_the_start_until_it_ends(policy: AdSyncPolicy) -> None:
    state = pb.mark_ready(starting(), A, "e1", PLAYERS, NOW + 10, T)
    state = pb.ad_start(state, A, policy, NOW + 20, T)
    assert state.status == "starting"
    assert state.ready == frozenset(), "its earlier ready no longer counts"
    assert state.deadline_ms == NOW + 20 + T.ad_max_wait_ms
    state = pb.mark_ready(state, B, "e1", PLAYERS, NOW + 30, T)
    assert state.status == "starting", "B is ready but A is in an ad"
    state = pb.ad_end(state, A, PLAYERS, NOW + 15_000, T)
    assert state.status == "starting"
    assert state.deadline_ms == NOW + 15_000 + T.start_timeout_ms, "A gets a start's time"
    state = pb.mark_ready(state, A, "e1", PLAYERS, NOW + 15_500, T)
    assert state.status == "playing"
    assert state.anchor_ms == NOW + 15_500 + T.start_buffer_ms


def test_a_start_held_by_a_stuck_ad_begins_at_the_ad_deadline() -> None:
    state = pb.ad_start(starting(), A, "starting_only", NOW + 20, T)
    assert pb.expire(state, PLAYERS, NOW + 1_000, T).status == "playing"  # expire is forced
    assert pb.begin_if_ready(state, PLAYERS, NOW + 1_000, T) == state
    forced = pb.begin_if_ready(state, PLAYERS, NOW + 20 + T.ad_max_wait_ms, T, force=True)
    assert forced.status == "playing"
    assert forced.ads == frozenset()


def test_only_the_first_ad_of_a_start_extends_its_wait() -> None:
    state = pb.ad_start(starting(), A, "starting_only", NOW + 20, T)
    state = pb.ad_start(state, B, "starting_only", NOW + 50_000, T)
    assert state.deadline_ms == NOW + 20 + T.ad_max_wait_ms


def test_an_ad_while_paused_is_remembered_and_idle_ignores_ads() -> None:
    assert pb.ad_start(paused(), A, "starting_only", NOW, T).ads == {A}
    assert pb.ad_start(PlaybackState(), A, "pause_all", NOW, T) == PlaybackState()


# -- rate --------------------------------------------------------------------------------------


def test_rate_while_playing_reanchors_where_the_video_is() -> None:
    state = pb.set_rate(playing(10_000), 2.0, NOW + 4_000)
    assert (state.position_ms, state.anchor_ms, state.rate) == (14_000, NOW + 4_000, 2.0)
    assert state.deadline_ms == NOW + 4_000 + (DURATION - 14_000) // 2
    assert state.position_at(NOW + 5_000) == 16_000


def test_rate_before_a_future_shared_start_keeps_the_start_instant() -> None:
    state = replace(playing(10_000), anchor_ms=NOW + 200)
    changed = pb.set_rate(state, 0.5, NOW)
    assert (changed.position_ms, changed.anchor_ms) == (10_000, NOW + 200)
    assert changed.deadline_ms == NOW + 200 + (DURATION - 10_000) * 2


@pytest.mark.parametrize("status", ["idle", "starting", "paused", "midroll"])
def test_rate_otherwise_only_sets_the_rate(status: str) -> None:
    state = replace(paused(), status=status)  # type: ignore[arg-type]
    assert pb.set_rate(state, 1.5, NOW + 99) == replace(state, rate=1.5)


@settings(max_examples=200, deadline=None)
@given(
    position=st.integers(0, DURATION),
    elapsed=st.integers(0, 100_000),
    old=st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0]),
    new=st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0]),
)
def test_rate_changes_never_jump_the_position(
    position: int, elapsed: int, old: float, new: float
) -> None:
    state = replace(playing(position), rate=old)
    now = NOW + elapsed
    assert pb.set_rate(state, new, now).position_at(now) == state.position_at(now)


# -- votes -------------------------------------------------------------------------------------


def test_votes_count_once_per_user_and_show_in_the_playback() -> None:
    state = pb.vote_skip(playing(), "u1")
    state = pb.vote_skip(state, "u1")
    state = pb.vote_skip(state, "u2")
    assert state.votes == {"u1", "u2"}
    assert state.contract_data()["skip_votes"] == 2
    assert pb.load(state, entry("e2"), NOBODY, NOW, T).votes == frozenset()
    assert pb.finish(state, NOW).votes == frozenset()


def test_no_vote_without_an_entry() -> None:
    with pytest.raises(ServiceError) as err:
        pb.vote_skip(PlaybackState(), "u1")
    assert err.value.code is ErrorCode.BAD_STATE


@pytest.mark.parametrize(
    ("ratio", "online", "needed"),
    [
        (0.5, 1, 1),
        (0.5, 2, 1),
        (0.5, 3, 2),
        (0.5, 4, 2),
        (0.3, 10, 3),  # not 4: 0.3 * 10 is 3.0000000000000004 in floats
        (1.0, 5, 5),
        (0.01, 5, 1),
        (0.5, 0, 1),
    ],
)
def test_votes_needed(ratio: float, online: int, needed: int) -> None:
    assert pb.votes_needed(ratio, online) == needed


def test_timing_defaults_the_ad_wait() -> None:
    assert Timing(200, 4000).ad_max_wait_ms == 90_000
