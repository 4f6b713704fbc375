"""loadtest/sequence.py: what counts as lost, reordered, duplicated or merely out of order."""

from loadtest.sequence import VersionStream, combine


def feed(stream: VersionStream, arrivals: list[tuple[int, float]]) -> VersionStream:
    for v, at in arrivals:
        stream.see(v, at)
    return stream


def test_a_room_watched_from_its_creation_must_see_every_version_from_one() -> None:
    clean = feed(VersionStream(0.25, after=0), [(1, 0.0), (2, 0.1), (3, 0.2)])
    clean.close(final_v=3)
    assert (clean.lost, clean.reordered, clean.duplicates, clean.out_of_order) == (0, 0, 0, 0)

    late_start = feed(VersionStream(0.25, after=0), [(3, 0.0), (4, 0.1)])
    late_start.close(final_v=4)
    assert late_start.lost == 2  # 1 and 2 never came


def test_a_missing_tail_is_lost_too() -> None:
    stream = feed(VersionStream(0.25, after=0), [(1, 0.0), (2, 0.1)])
    stream.close(final_v=5)
    assert stream.lost == 3


def test_on_the_bus_a_late_predecessor_within_the_hold_is_only_out_of_order() -> None:
    stream = feed(VersionStream(0.25, after=0), [(1, 0.0), (3, 1.0), (2, 1.1)])
    assert (stream.out_of_order, stream.reordered, stream.lost) == (1, 0, 0)
    stream = feed(VersionStream(0.25, after=0), [(1, 0.0), (3, 1.0), (2, 1.4)])
    assert (stream.out_of_order, stream.reordered, stream.lost) == (0, 1, 0)


def test_behind_the_gateway_any_step_back_is_a_fault() -> None:
    stream = feed(VersionStream(0.0, after=10), [(11, 0.0), (13, 0.1), (12, 0.1001)])
    assert stream.reordered == 1
    dup = feed(VersionStream(0.0, after=10), [(11, 0.0), (11, 0.1)])
    assert dup.duplicates == 1


def test_a_socket_may_start_below_its_snapshot_version_but_not_above_the_next() -> None:
    # The snapshot was read at v 12; the channel forwards from an earlier part's version on.
    early = feed(VersionStream(0.0, after=12), [(11, 0.0), (12, 0.1), (13, 0.2)])
    early.close(final_v=13)
    assert early.lost == 0 and early.duplicates == 0
    gap = feed(VersionStream(0.0, after=12), [(15, 0.0)])
    gap.close(final_v=15)
    assert gap.lost == 2  # 13 and 14


def test_an_unwatched_start_begins_at_the_first_version_seen() -> None:
    stream = feed(VersionStream(), [(40, 0.0), (41, 0.1)])
    stream.close(final_v=41)
    assert stream.lost == 0


def test_combine_adds_up_streams() -> None:
    a = feed(VersionStream(0.0, after=0), [(1, 0.0), (3, 0.1)])
    b = feed(VersionStream(0.0, after=0), [(1, 0.0), (1, 0.1)])
    out = combine([a, b])
    assert out == {
        "streams": 2,
        "received": 4,
        "lost": 1,
        "reordered": 0,
        "duplicates": 1,
        "out_of_order_within_hold": 0,
    }
