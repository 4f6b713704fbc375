"""The permission matrix: every command × standing × control mode × admin, every cell."""

from itertools import product
from typing import get_args

import pytest

from services.common.contracts.commands import ROUTES
from services.common.contracts.errors import ErrorCode
from services.common.contracts.models import ControlMode, Role
from services.rooms.permissions import (
    CONTROL_COMMANDS,
    POLICY,
    STANDINGS,
    Standing,
    can_change_settings,
    can_control,
    can_moderate,
    decide,
    denied_message,
    role_of,
    standing_of,
)
from tests.support.permission_table import ACTORS, ALLOWED, MODES, expected

ROLES: tuple[Role | None, ...] = (*get_args(Role), None)

# Who may move everyone's playback: (mode, role) -> allowed, for a user who is not an admin.
CONTROL_TABLE: dict[tuple[ControlMode, Role | None], bool] = {
    ("owner_only", "owner"): True,
    ("owner_only", "operator"): False,
    ("owner_only", "member"): False,
    ("owner_only", None): False,
    ("operators", "owner"): True,
    ("operators", "operator"): True,
    ("operators", "member"): False,
    ("operators", None): False,
    ("any", "owner"): True,
    ("any", "operator"): True,
    ("any", "member"): True,
    ("any", None): False,  # not a member: never, whatever the mode
}

SETTINGS_TABLE: dict[Role | None, bool] = {
    "owner": True,
    "operator": False,
    "member": False,
    None: False,
}


def test_the_tables_cover_every_mode_and_role() -> None:
    assert set(CONTROL_TABLE) == set(product(get_args(ControlMode), ROLES))
    assert set(SETTINGS_TABLE) == set(ROLES)
    assert set(MODES) == set(get_args(ControlMode))


@pytest.mark.parametrize(("mode", "role"), sorted(CONTROL_TABLE, key=str))
def test_can_control(mode: ControlMode, role: Role | None) -> None:
    assert can_control(role, mode) is CONTROL_TABLE[mode, role]
    assert can_control(role, mode, admin=False) is CONTROL_TABLE[mode, role]


@pytest.mark.parametrize(("mode", "role"), sorted(CONTROL_TABLE, key=str))
def test_an_admin_may_always_control(mode: ControlMode, role: Role | None) -> None:
    assert can_control(role, mode, admin=True) is True


@pytest.mark.parametrize("role", ROLES)
def test_can_change_settings(role: Role | None) -> None:
    assert can_change_settings(role) is SETTINGS_TABLE[role]
    assert can_change_settings(role, admin=True) is True


def test_control_commands_are_the_playback_commands() -> None:
    assert frozenset({"play", "pause", "seek", "skip", "restart", "rate"}) == CONTROL_COMMANDS
    for command in CONTROL_COMMANDS:
        assert ROUTES[command].service == "rooms"


# -- the whole matrix --------------------------------------------------------------------------


def _room_commands() -> set[str]:
    return {
        name
        for name, route in ROUTES.items()
        if route.service in ("rooms", "queue") and route.needs_room
    }


def test_every_room_command_has_a_policy_and_a_table_row() -> None:
    assert set(POLICY) == _room_commands()
    assert set(ALLOWED) == _room_commands()
    for modes in ALLOWED.values():
        assert set(modes) == set(MODES)
        assert all(actors <= set(ACTORS) for actors in modes.values())


_CELLS = [
    (command, actor, mode) for command in sorted(ALLOWED) for actor in ACTORS for mode in MODES
]


@pytest.mark.parametrize(("command", "actor", "mode"), _CELLS)
def test_decide_matches_the_table(command: str, actor: str, mode: ControlMode) -> None:
    if actor == "admin":
        # An admin may do everything, whatever their own standing in the room.
        for standing in STANDINGS:
            assert decide(command, standing, mode, admin=True) is None
        return
    got = decide(command, actor, mode)  # type: ignore[arg-type]
    want = expected(command, actor, mode)  # type: ignore[arg-type]
    assert (got.value if got else None) == want


@pytest.mark.parametrize("command", sorted(POLICY))
def test_forbidden_messages_name_the_rule(command: str) -> None:
    message = denied_message(command)
    assert message is None or message.endswith(".")


def test_unknown_commands_have_no_policy() -> None:
    with pytest.raises(KeyError):
        decide("chat.nuke", "owner", "any")


# -- standing and moderation -------------------------------------------------------------------


class _Row:
    def __init__(self, role: str, banned: bool = False) -> None:
        self.role = role
        self.banned = banned


@pytest.mark.parametrize(
    ("user_id", "membership", "standing"),
    [
        ("u1", None, "owner"),  # the room's owner_id decides, whatever the row says
        ("u1", _Row("member"), "owner"),
        ("u2", None, "outsider"),
        ("u2", _Row("member"), "member"),
        ("u2", _Row("operator"), "operator"),
        ("u2", _Row("operator", banned=True), "banned"),
        ("u2", _Row("owner"), "member"),  # a stale owner row after a transfer away
    ],
)
def test_standing_of(user_id: str, membership: _Row | None, standing: Standing) -> None:
    assert standing_of("u1", user_id, membership) == standing


def test_role_of_standing() -> None:
    assert [role_of(s) for s in STANDINGS] == ["owner", "operator", "member", None, None]


# actor -> targets they may kick or ban (not an admin)
MODERATION: dict[Standing, set[Standing]] = {
    "owner": {"operator", "member", "outsider", "banned"},
    "operator": {"member", "outsider", "banned"},
    "member": set(),
    "outsider": set(),
    "banned": set(),
}


@pytest.mark.parametrize(("actor", "target"), list(product(STANDINGS, STANDINGS)))
def test_can_moderate(actor: Standing, target: Standing) -> None:
    assert can_moderate(actor, target) is (target in MODERATION[actor])
    # Admins moderate anyone but the owner, who must hand the room over first.
    assert can_moderate(actor, target, admin=True) is (target != "owner")


def test_join_of_a_banned_user_is_forbidden_not_not_member() -> None:
    assert decide("join", "banned", "any") is ErrorCode.FORBIDDEN
    assert decide("join", "outsider", "owner_only") is None


@pytest.mark.parametrize("mode", MODES)
def test_only_the_owner_or_an_admin_closes_a_room(mode: ControlMode) -> None:
    assert decide("room.close", "owner", mode) is None
    for standing in STANDINGS:
        assert decide("room.close", standing, mode, admin=True) is None
    assert decide("room.close", "operator", mode) is ErrorCode.FORBIDDEN
    assert decide("room.close", "member", mode) is ErrorCode.FORBIDDEN
    assert decide("room.close", "outsider", mode) is ErrorCode.NOT_MEMBER
    assert decide("room.close", "banned", mode) is ErrorCode.NOT_MEMBER
    assert denied_message("room.close") == "Only the room's owner may do this."
