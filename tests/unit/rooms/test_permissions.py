"""The permission matrix: control mode × role × admin, every cell."""

from itertools import product
from typing import get_args

import pytest

from services.common.contracts.commands import ROUTES
from services.common.contracts.models import ControlMode, Role
from services.rooms.permissions import CONTROL_COMMANDS, can_change_settings, can_control

MODES: tuple[ControlMode, ...] = get_args(ControlMode)
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
    assert set(CONTROL_TABLE) == set(product(MODES, ROLES))
    assert set(SETTINGS_TABLE) == set(ROLES)


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
    assert frozenset({"play", "pause", "seek", "skip", "restart"}) == CONTROL_COMMANDS
    for command in CONTROL_COMMANDS:
        assert ROUTES[command].service == "rooms"
