"""Who may delete a chat message: the room's owner and operators, and admins anywhere."""

import pytest

from services.chat.service import can_moderate
from services.common.contracts.envelope import AccessReply
from services.common.contracts.models import RoomSettings, UserRef

SETTINGS = RoomSettings(name="r")


@pytest.mark.parametrize(
    ("member", "role", "admin", "allowed"),
    [
        (True, "owner", False, True),
        (True, "operator", False, True),
        (True, "member", False, False),
        (False, None, False, False),
        (False, None, True, True),  # an admin who never joined
        (True, "member", True, True),
        (False, "operator", False, False),  # a banned operator is no member
    ],
)
def test_can_moderate(member: bool, role: str | None, admin: bool, allowed: bool) -> None:
    access = AccessReply(member=member, role=role, banned=not member, settings=SETTINGS)  # type: ignore[arg-type]
    assert can_moderate(access, UserRef(id="u", name="n", admin=admin)) is allowed
