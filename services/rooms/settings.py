from services.common.settings import CommonSettings


class RoomsSettings(CommonSettings):
    # How far ahead of "now" a start is anchored: long enough for the playback event to reach
    # every client (p99 fan-out is a few ms on one machine, tens across regions) and for the
    # players to be ready to go. The seed used 200 ms.
    playback_start_buffer_ms: int = 200
    # The most a room in `starting` waits for its players' `ready`, so a client that never
    # reports cannot hold everyone (DESIGN.md: "a few seconds").
    playback_start_timeout_ms: int = 4000
    # How often each replica looks for deadlines nobody's timer caught (a replica died).
    deadline_sweep_interval_s: float = 1.0
    # The longest a room waits for its players' ads (midroll, or a start held by an ad), so
    # a client that never reports `ad.end` cannot hold the room: YouTube's unskippable ads run
    # 15-30 s and pods of two up to 60 s.
    ad_max_wait_ms: int = 90_000
