"""The playback state machine, pure: every transition takes the state and `now` (server ms).

idle ──play──► starting ──all players ready / timeout──► playing ──pause──► paused
                  ▲                                          │
                  └──────── seek, restart, new entry ────────┘

`starting` exists so everyone starts at one instant: players load the entry at position_ms and
report `ready`; then the room anchors playback PLAYBACK_START_BUFFER_MS in the future, long
enough for the event to reach every client before the instant it names.
"""

from dataclasses import dataclass, field, replace

from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import Playback, PlaybackStatus, QueueEntry


@dataclass(frozen=True, slots=True)
class Timing:
    start_buffer_ms: int
    start_timeout_ms: int


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

    def position_at(self, now_ms: int) -> int:
        if self.status != "playing" or now_ms <= self.anchor_ms:
            return self.position_ms
        pos = self.position_ms + int((now_ms - self.anchor_ms) * self.rate)
        return min(pos, self.duration_ms) if self.duration_ms else pos

    def to_contract(self) -> Playback:
        return Playback(
            status=self.status,
            entry_id=self.entry_id,
            video_id=self.video_id,
            title=self.title,
            duration_ms=self.duration_ms,
            position_ms=self.position_ms,
            anchor_ms=self.anchor_ms,
            rate=self.rate,
        )


def _starting(state: PlaybackState, position_ms: int, now_ms: int, t: Timing) -> PlaybackState:
    return replace(
        state,
        status="starting",
        position_ms=position_ms,
        anchor_ms=0,
        ready=frozenset(),
        deadline_ms=now_ms + t.start_timeout_ms,
    )


def begin_if_ready(
    state: PlaybackState, players: frozenset[str], now_ms: int, t: Timing, force: bool = False
) -> PlaybackState:
    """Leave `starting` once every online player is ready (or when forced by the timeout)."""
    if state.status != "starting":
        return state
    if not force and not players <= state.ready:
        return state
    anchor = now_ms + t.start_buffer_ms
    return replace(
        state,
        status="playing",
        anchor_ms=anchor,
        ready=frozenset(),
        deadline_ms=_end_of(state.position_ms, anchor, state.rate, state.duration_ms),
    )


def _end_of(position_ms: int, anchor_ms: int, rate: float, duration_ms: int | None) -> int | None:
    if not duration_ms:
        return None  # players report `ended` instead
    return anchor_ms + int(max(0, duration_ms - position_ms) / rate)


def load(
    state: PlaybackState, entry: QueueEntry, players: frozenset[str], now_ms: int, t: Timing
) -> PlaybackState:
    loaded = replace(
        state,
        entry_id=entry.id,
        video_id=entry.video_id,
        title=entry.title,
        duration_ms=entry.duration_ms,
    )
    return begin_if_ready(_starting(loaded, 0, now_ms, t), players, now_ms, t)


def play(state: PlaybackState, players: frozenset[str], now_ms: int, t: Timing) -> PlaybackState:
    if state.status in ("playing", "starting"):
        return state  # already on its way: a second play changes nothing
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
    )


def stop_at_end(state: PlaybackState, now_ms: int) -> PlaybackState:
    """Auto-advance is off: hold the ended video paused at its end."""
    return replace(pause(state, now_ms), deadline_ms=None)


def clear(state: PlaybackState) -> PlaybackState:
    return PlaybackState(rate=state.rate)
