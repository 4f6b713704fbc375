"""Merging a `members` event into a client's list (tests/support/client.py's reducer, which
the JS client's mergeMembers mirrors): the whole list replaces it; a delta replaces the
changed entries in place, puts newcomers at their (joined_at_ms, user_id) place and drops the
gone, so the list equals the one a fresh snapshot would carry."""

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tests.support.client import apply_event, apply_snapshot, member_news, reduce_members


def entry(user_id: str, joined_at_ms: int, **fields: Any) -> dict[str, Any]:
    base = {"user_id": user_id, "name": user_id, "role": "member", "online": True}
    return {**base, "player": False, "away": False, "joined_at_ms": joined_at_ms, **fields}


ANN, BOB, CID = entry("a", 10, role="owner"), entry("b", 20), entry("c", 30)


def test_a_whole_list_replaces_the_members() -> None:
    assert reduce_members([ANN, BOB], [CID]) == [CID]


def test_a_changed_entry_is_replaced_in_place() -> None:
    away = {**BOB, "online": False, "away": True}
    assert reduce_members([ANN, BOB, CID], {"changed": [away], "gone": []}) == [ANN, away, CID]


def test_a_newcomer_goes_where_a_snapshot_lists_them() -> None:
    dan = entry("d", 40)
    assert reduce_members([ANN, CID], {"changed": [dan], "gone": []}) == [ANN, CID, dan]
    # Back after leaving: the first join's place, not the end.
    assert reduce_members([ANN, CID], {"changed": [BOB], "gone": []}) == [ANN, BOB, CID]
    # The same millisecond: by user id.
    early = entry("0", 20)
    assert reduce_members([ANN, BOB], {"changed": [early], "gone": []}) == [ANN, early, BOB]


def test_gone_ids_are_dropped_and_unknown_ones_ignored() -> None:
    delta = {"changed": [], "gone": ["b", "never-listed"]}
    assert reduce_members([ANN, BOB, CID], delta) == [ANN, CID]


def test_the_input_list_is_not_changed() -> None:
    members = [ANN, BOB]
    reduce_members(members, {"changed": [CID], "gone": ["a"]})
    assert members == [ANN, BOB]


def test_an_event_merges_into_the_snapshot_state_only_when_newer() -> None:
    snapshot = {
        "room": {},
        "playback": {},
        "settings": {},
        "queue": [],
        "chat": [],
        "members": [ANN, BOB],
        "versions": {"playback": 1, "members": 5, "settings": 1, "queue": 1, "chat": 1},
    }
    state = apply_snapshot(snapshot)
    old = {"type": "members", "v": 5, "data": {"changed": [], "gone": ["a"]}}
    assert apply_event(state, old) is state
    new = apply_event(state, {"type": "members", "v": 6, "data": {"changed": [CID], "gone": []}})
    assert new["parts"]["members"] == [ANN, BOB, CID] and new["versions"]["members"] == 6


def test_what_an_event_says_of_one_user() -> None:
    delta = {"type": "members", "data": {"changed": [BOB], "gone": ["c"]}}
    assert member_news(delta, "b") == (True, BOB)
    assert member_news(delta, "c") == (True, None)
    assert member_news(delta, "a") == (False, None), "a delta is silent on the others"
    assert member_news({"type": "members", "data": [BOB]}, "a") == (True, None)


# A room's memberships: user -> (joined_at_ms, listed). A change touches some users: each
# may become listed or not; one not listed may come back with a new joined_at_ms (kicked,
# then joined again) or with their old one (left, then joined again).
USERS = [f"u{i}" for i in range(8)]
Change = st.dictionaries(
    st.sampled_from(USERS), st.tuples(st.booleans(), st.booleans(), st.integers(0, 5)), max_size=4
)


@given(st.lists(Change, max_size=25))
def test_deltas_fold_into_the_list_a_snapshot_would_carry(changes: list[dict]) -> None:
    rows: dict[str, tuple[int, bool, int]] = {}  # user -> (joined_at_ms, listed, revision)

    def snapshot() -> list[dict[str, Any]]:
        listed = sorted((j, u) for u, (j, on, _) in rows.items() if on)
        return [entry(u, j, name=f"{u}.{rows[u][2]}") for j, u in listed]

    members = snapshot()
    for clock, change in enumerate(changes):
        for user_id, (listed, rejoined, when) in change.items():
            joined, was_listed, revision = rows.get(user_id, (clock * 10 + when, False, 0))
            if rejoined and not was_listed:
                joined = clock * 10 + when
            rows[user_id] = (joined, listed, revision + 1)
        now = {m["user_id"]: m for m in snapshot()}
        delta = {
            "changed": [now[u] for u in change if u in now],
            "gone": [u for u in change if u not in now],
        }
        members = reduce_members(members, delta)
        assert members == snapshot()
