"""The playback state machine, pure: every transition takes the state and `now` (server ms).

idle ──play──► starting ──all players ready / timeout──► playing ──pause──► paused
                  ▲    ▲                                     │  ▲
                  │    └──── seek, restart, new entry ───────┤  │ (ad-sync policy
                  │                                          ▼  │  pause_all / operators_only)
                  └──────── every counted ad ended / AD_MAX_WAIT_MS ── midroll

`starting` exists so everyone starts at one instant: players load the entry at position_ms and
report `ready`; then the room anchors playback PLAYBACK_START_BUFFER_MS in the future, long
enough for the event to reach every client before the instant it names.

Ads: players report `ad.start` / `ad.end`. The service decides whether a report counts under
the room's policy (`ad_counts`); a counted ad is kept in `ads`. While playing it holds the
room in `midroll` at the shared position; while starting it keeps the start waiting (and the
player's earlier `ready` no longer counts). Either wait ends when the counted ads end, or at
the latest AD_MAX_WAIT_MS after it began, so a stuck client cannot hold a room.
"""

import math
from dataclasses import dataclass, field, replace
from typing import Any

from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import AdSyncPolicy, PlaybackStatus, QueueEntry


@dataclass(frozen=True, slots=True)
class Timing:
    start_buffer_ms: int
    start_timeout_ms: int
    # The longest a room waits for players' ads (midroll, or a start held by an ad): YouTube's
    # unskippable ads run 15-30 s and pods of two up to 60 s; 90 s covers them with margin.
    ad_max_wait_ms: int = 90_000


@dataclass(frozen=True, slots=True)
class PlaybackState:
    status: PlaybackStatus = "idle"
    entry_id: str | None = None
    video_id: str | None = None
    title: str | None = None
    duration_ms: int | None = None
    position_ms: int = 0
    anchor_ms: int = 0
    rate: float = 1.0
    ready: frozenset[str] = field(default_factory=frozenset)
    deadline_ms: int | None = None
    # Player connections whose ad counts under the room's ad-sync policy.
    ads: frozenset[str] = field(default_factory=frozenset)
    # Users who voted to skip the current entry.
    votes: frozenset[str] = field(default_factory=frozenset)

    def position_at(self, now_ms: int) -> int:
        if self.status != "playing" or now_ms <= self.anchor_ms:
            return self.position_ms
        pos = self.position_ms + int((now_ms - self.anchor_ms) * self.rate)
        return min(pos, self.duration_ms) if self.duration_ms else pos

    def contract_data(self) -> dict[str, Any]:
        """The public part, as the `Playback` contract dumps it. Built without the model: a
        control's path builds it for its event and its reply and to see whether anything
        visible changed, and the model's construction, dump and comparison took 15 µs warm
        (tests/unit/rooms/test_playback.py holds the two to the same fields)."""
        return {
            "status": self.status,
            "entry_id": self.entry_id,
            "video_id": self.video_id,
            "title": self.title,
            "duration_ms": None if self.duration_ms is None else int(self.duration_ms),
            "position_ms": int(self.position_ms),
            "anchor_ms": int(self.anchor_ms),
            "rate": float(self.rate),
            "skip_votes": len(self.votes),
        }


def _starting(state: PlaybackState, position_ms: int, now_ms: int, t: Timing) -> PlaybackState:
    # A player still in an ad keeps the start waiting, so give it the ad wait, not the
    # few seconds a start normally waits.
    wait_ms = t.ad_max_wait_ms if state.ads else t.start_timeout_ms
    return replace(
        state,
        status="starting",
        position_ms=position_ms,
        anchor_ms=0,
        ready=frozenset(),
        deadline_ms=now_ms + wait_ms,
    )


def begin_if_ready(
    state: PlaybackState, players: frozenset[str], now_ms: int, t: Timing, force: bool = False
) -> PlaybackState:
    """Leave `starting` once every online player is ready and out of its ad (or when forced
    by the timeout: then the ads are no longer waited for either)."""
    if state.status != "starting":
        return state
    if not force and (not players <= state.ready or state.ads & players):
        return state
    anchor = now_ms + t.start_buffer_ms
    return replace(
        state,
        status="playing",
        anchor_ms=anchor,
        ready=frozenset(),
        ads=frozenset() if force else state.ads,
        deadline_ms=_end_of(state.position_ms, anchor, state.rate, state.duration_ms),
    )


def _end_of(position_ms: int, anchor_ms: int, rate: float, duration_ms: int | None) -> int | None:
    if not duration_ms:
        return None  # players report `ended` instead
    return anchor_ms + int(max(0, duration_ms - position_ms) / rate)


def load(
    state: PlaybackState, entry: QueueEntry, players: frozenset[str], now_ms: int, t: Timing
) -> PlaybackState:
    # A new video: the old one's ads and skip votes are over (its preroll, if any, is
    # reported afresh by the players).
    loaded = replace(
        state,
        entry_id=entry.id,
        video_id=entry.video_id,
        title=entry.title,
        duration_ms=entry.duration_ms,
        ads=frozenset(),
        votes=frozenset(),
    )
    return begin_if_ready(_starting(loaded, 0, now_ms, t), players, now_ms, t)


def play(state: PlaybackState, players: frozenset[str], now_ms: int, t: Timing) -> PlaybackState:
    if state.status in ("playing", "starting", "midroll"):
        # Already on its way (a midroll resumes by itself when the ads end).
        return state
    if state.entry_id is None:
        raise ServiceError(ErrorCode.QUEUE_EMPTY)
    return begin_if_ready(_starting(state, state.position_ms, now_ms, t), players, now_ms, t)


def pause(state: PlaybackState, now_ms: int) -> PlaybackState:
    if state.status in ("paused", "idle"):
        return state
    return replace(
        state,
        status="paused",
        position_ms=state.position_at(now_ms),
        anchor_ms=now_ms,
        ready=frozenset(),
        deadline_ms=None,
    )


def seek(
    state: PlaybackState, position_ms: int, players: frozenset[str], now_ms: int, t: Timing
) -> PlaybackState:
    if state.entry_id is None:
        raise ServiceError(ErrorCode.BAD_STATE, "Nothing is loaded to seek in.")
    if state.duration_ms:
        position_ms = min(position_ms, state.duration_ms)
    if state.status in ("playing", "starting"):
        return begin_if_ready(_starting(state, position_ms, now_ms, t), players, now_ms, t)
    return replace(state, position_ms=position_ms, anchor_ms=now_ms)


def mark_ready(
    state: PlaybackState,
    conn: str,
    entry_id: str,
    players: frozenset[str],
    now_ms: int,
    t: Timing,
) -> PlaybackState:
    if state.status != "starting" or entry_id != state.entry_id:
        return state  # a late ready for an older start: nothing waits for it any more
    return begin_if_ready(replace(state, ready=state.ready | {conn}), players, now_ms, t)


def finish(state: PlaybackState, now_ms: int) -> PlaybackState:
    """The last entry ended and nothing follows: stop at its end."""
    return replace(
        state,
        status="idle",
        position_ms=state.duration_ms or state.position_at(now_ms),
        anchor_ms=now_ms,
        ready=frozenset(),
        deadline_ms=None,
        ads=frozenset(),
        votes=frozenset(),
    )


def stop_at_end(state: PlaybackState, now_ms: int) -> PlaybackState:
    """Auto-advance is off: hold the ended video paused at its end."""
    return replace(pause(state, now_ms), deadline_ms=None)


def clear(state: PlaybackState) -> PlaybackState:
    return PlaybackState(rate=state.rate)


# -- synchronized speed ------------------------------------------------------------------------


def set_rate(state: PlaybackState, rate: float, now_ms: int) -> PlaybackState:
    """Change the room's rate; while playing, re-anchor where the video is now (or at the
    shared start instant if that is still ahead), so the position is continuous."""
    if state.status != "playing":
        return replace(state, rate=rate)
    anchor = max(now_ms, state.anchor_ms)
    position = state.position_at(anchor)
    return replace(
        state,
        position_ms=position,
        anchor_ms=anchor,
        rate=rate,
        deadline_ms=_end_of(position, anchor, rate, state.duration_ms),
    )


# -- ads ---------------------------------------------------------------------------------------


def ad_counts(policy: AdSyncPolicy, privileged: bool) -> bool:
    """Does a player's ad count under the room's policy? `privileged`: the player's user is
    the owner or an operator."""
    if policy == "off":
        return False
    if policy == "operators_only":
        return privileged
    return True


def ad_start(
    state: PlaybackState, conn: str, policy: AdSyncPolicy, now_ms: int, t: Timing
) -> PlaybackState:
    """A player's counted ad began (the caller checked `ad_counts`)."""
    if policy == "off" or conn in state.ads:
        return state
    ads = state.ads | {conn}
    if state.status == "playing":
        if policy == "starting_only":
            return state  # the player catches up after its ad, by a seek
        return replace(
            state,
            status="midroll",
            position_ms=state.position_at(now_ms),
            anchor_ms=now_ms,
            ready=frozenset(),
            ads=ads,
            # Fixed at the first ad: more ads during the midroll do not extend it.
            deadline_ms=now_ms + t.ad_max_wait_ms,
        )
    if state.status == "midroll":
        return state if policy == "starting_only" else replace(state, ads=ads)
    if state.status == "starting":
        deadline = state.deadline_ms
        if not state.ads:  # the first ad of this start extends its wait, once
            deadline = max(deadline or 0, now_ms + t.ad_max_wait_ms)
        return replace(state, ads=ads, ready=state.ready - {conn}, deadline_ms=deadline)
    if state.status == "paused":
        return replace(state, ads=ads)  # the next start waits for it
    return state


def ad_end(
    state: PlaybackState, conn: str, players: frozenset[str], now_ms: int, t: Timing
) -> PlaybackState:
    """A player's ad ended (or the player left): a midroll resumes when no counted ad is
    left, through `starting` at the shared position; a held start may begin."""
    if conn not in state.ads:
        return state
    state = replace(state, ads=state.ads - {conn})
    waiting = state.ads & players
    if state.status == "midroll":
        return state if waiting else _resume(state, players, now_ms, t)
    if state.status == "starting":
        if not waiting and state.deadline_ms is not None:
            # The ad is over: the player now gets a normal start's time to report ready.
            state = replace(state, deadline_ms=min(state.deadline_ms, now_ms + t.start_timeout_ms))
        return begin_if_ready(state, players, now_ms, t)
    return state


def forget_ads(
    state: PlaybackState, players: frozenset[str], now_ms: int, t: Timing
) -> PlaybackState:
    """The ad-sync policy changed: nothing waits for ads reported under the old one."""
    for conn in sorted(state.ads):
        state = ad_end(state, conn, players, now_ms, t)
    return state


def _resume(state: PlaybackState, players: frozenset[str], now_ms: int, t: Timing) -> PlaybackState:
    state = replace(state, ads=state.ads & players)
    return begin_if_ready(_starting(state, state.position_ms, now_ms, t), players, now_ms, t)


def drop_player(
    state: PlaybackState, conn: str, players: frozenset[str], now_ms: int, t: Timing
) -> PlaybackState:
    """A player connection left the room (`players` no longer holds it): it holds up no
    start and no midroll any more."""
    state = ad_end(state, conn, players, now_ms, t)
    return begin_if_ready(replace(state, ready=state.ready - {conn}), players, now_ms, t)


def expire(state: PlaybackState, players: frozenset[str], now_ms: int, t: Timing) -> PlaybackState:
    """The room's deadline passed while waiting: a start begins without the silent players
    and the stuck ads; a midroll resumes."""
    if state.status == "starting":
        return begin_if_ready(state, players, now_ms, t, force=True)
    if state.status == "midroll":
        return _resume(replace(state, ads=frozenset()), players, now_ms, t)
    return state


# -- vote skip ---------------------------------------------------------------------------------


def vote_skip(state: PlaybackState, user_id: str) -> PlaybackState:
    if state.entry_id is None or state.status == "idle":
        raise ServiceError(ErrorCode.BAD_STATE, "Nothing is playing to skip.")
    return replace(state, votes=state.votes | {user_id})


def votes_needed(ratio: float, online: int) -> int:
    """Votes that skip: the ratio of online members, rounded up, at least one. The epsilon
    keeps 0.3 * 10 (3.0000000000000004 in floats) at 3."""
    return max(1, math.ceil(ratio * online - 1e-9))
