"""Who may do what in a room: the permission matrix, pure.

Every room command (rooms' own and the queue's, which asks rooms through `access`) has one
`Need`; `decide` turns (command, the caller's standing, the room's control mode, admin) into
"allowed" or the error code the caller gets. Admins may do everything.
"""

from enum import StrEnum
from typing import Any, Final, Literal

from services.common.contracts.errors import ErrorCode
from services.common.contracts.models import ControlMode, Role

# Where a user stands in one room. `outsider`: never joined or was kicked; `banned` may not
# join again until a moderator lifts the ban.
Standing = Literal["owner", "operator", "member", "outsider", "banned"]
STANDINGS: Final[tuple[Standing, ...]] = ("owner", "operator", "member", "outsider", "banned")


class Need(StrEnum):
    JOIN = "join"  # anyone but the banned
    ANYONE = "anyone"  # acts only on the caller's own socket (leave)
    MEMBER = "member"  # any member, whatever the control mode
    CONTROL = "control"  # the room's control mode decides
    MODERATOR = "moderator"  # owner or operator (kick, ban; the target's rank is checked too)
    OWNER = "owner"  # the owner alone (settings, roles, transfer, audit, close)


POLICY: Final[dict[str, Need]] = {
    "join": Need.JOIN,
    "leave": Need.ANYONE,
    "room.sync": Need.MEMBER,
    "room.settings": Need.OWNER,
    "play": Need.CONTROL,
    "pause": Need.CONTROL,
    "seek": Need.CONTROL,
    "skip": Need.CONTROL,
    "restart": Need.CONTROL,
    "rate": Need.CONTROL,
    # Player reports: any member's player (they also need a player session in the room).
    "ready": Need.MEMBER,
    "ended": Need.MEMBER,
    "ad.start": Need.MEMBER,
    "ad.end": Need.MEMBER,
    "skip.vote": Need.MEMBER,
    "room.role": Need.OWNER,
    "room.transfer": Need.OWNER,
    "room.kick": Need.MODERATOR,
    "room.ban": Need.MODERATOR,
    "room.audit": Need.OWNER,
    "room.close": Need.OWNER,  # ends the room for everyone
    # The queue service enforces these with rooms' answer to `access`.
    "queue.add": Need.MEMBER,  # the room's per-user cap applies to members
    "queue.load": Need.MEMBER,
    "queue.remove": Need.CONTROL,  # someone else's entry; one's own needs only MEMBER
    "queue.move": Need.CONTROL,
    "queue.shuffle": Need.CONTROL,
}

# Commands that move everyone's playback: gated by the room's control mode.
CONTROL_COMMANDS: Final = frozenset(
    c for c, need in POLICY.items() if need is Need.CONTROL and not c.startswith("queue.")
)

_RANK: Final[dict[Standing, int]] = {
    "owner": 3,
    "operator": 2,
    "member": 1,
    "outsider": 0,
    "banned": 0,
}

_DENIED_MESSAGES: Final[dict[Need, str]] = {
    Need.JOIN: "You are banned from this room.",
    Need.CONTROL: "The room's control mode does not let you.",
    Need.MODERATOR: "Only the owner and operators may do this.",
    Need.OWNER: "Only the room's owner may do this.",
}


def standing_of(owner_id: str, user_id: str, membership: Any | None) -> Standing:
    """`membership` is the user's rooms_members row (role, banned) or None."""
    if user_id == owner_id:
        return "owner"
    if membership is None:
        return "outsider"
    if membership.banned:
        return "banned"
    return "operator" if membership.role == "operator" else "member"


def role_of(standing: Standing) -> Role | None:
    return None if standing in ("outsider", "banned") else standing  # type: ignore[return-value]


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


def decide(
    command: str, standing: Standing, mode: ControlMode, admin: bool = False
) -> ErrorCode | None:
    """None when `command` is allowed, else the code the caller gets. Raises KeyError for a
    command that has no entry (every routed room command must have one)."""
    need = POLICY[command]
    if admin or need is Need.ANYONE:
        return None
    if need is Need.JOIN:
        return ErrorCode.FORBIDDEN if standing == "banned" else None
    role = role_of(standing)
    if role is None:
        return ErrorCode.NOT_MEMBER
    if need is Need.MEMBER:
        return None
    if need is Need.CONTROL:
        allowed = can_control(role, mode)
    elif need is Need.MODERATOR:
        allowed = role in ("owner", "operator")
    else:
        allowed = role == "owner"
    return None if allowed else ErrorCode.FORBIDDEN


def denied_message(command: str) -> str | None:
    """What a `forbidden` for `command` says to the user (None: the catalogue's text)."""
    return _DENIED_MESSAGES.get(POLICY[command])


def can_moderate(actor: Standing, target: Standing, admin: bool = False) -> bool:
    """May `actor` kick or ban `target`? Only someone of lower rank; never the owner, who must
    hand the room over first (a room always has an owner who may enter it)."""
    if target == "owner":
        return False
    if admin:
        return True
    return actor in ("owner", "operator") and _RANK[actor] > _RANK[target]
