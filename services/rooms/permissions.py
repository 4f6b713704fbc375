"""Who may do what in a room: the permission matrix, pure."""

from typing import Final

from services.common.contracts.models import ControlMode, Role

# Commands that move everyone's playback: gated by the room's control mode.
CONTROL_COMMANDS: Final = frozenset({"play", "pause", "seek", "skip", "restart"})


def can_control(role: Role | None, mode: ControlMode, admin: bool = False) -> bool:
    if admin:
        return True
    if role is None:
        return False
    if mode == "any":
        return True
    if mode == "operators":
        return role in ("owner", "operator")
    return role == "owner"


def can_change_settings(role: Role | None, admin: bool = False) -> bool:
    return admin or role == "owner"
