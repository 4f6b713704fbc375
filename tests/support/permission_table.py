"""The permission matrix as a literal table: every room command × who asks × control mode.

The unit test holds `services.rooms.permissions` to it; the e2e test drives the real system
through it. Written out by hand, not derived from the code under test.
"""

from typing import Final, Literal

Actor = Literal["owner", "operator", "member", "outsider", "banned", "admin"]
ACTORS: Final[tuple[Actor, ...]] = ("owner", "operator", "member", "outsider", "banned", "admin")
MODES: Final = ("owner_only", "operators", "any")

_EVERYONE = "owner operator member outsider banned admin"
_MEMBERS = "owner operator member admin"
_CONTROL = {
    "owner_only": "owner admin",
    "operators": "owner operator admin",
    "any": "owner operator member admin",
}


def _same(actors: str) -> dict[str, frozenset[str]]:
    return {mode: frozenset(actors.split()) for mode in MODES}


def _control() -> dict[str, frozenset[str]]:
    return {mode: frozenset(actors.split()) for mode, actors in _CONTROL.items()}


# command -> mode -> the actors it is allowed for. `admin` is a site admin (the token's
# `adm` claim); every other actor is an ordinary user.
ALLOWED: Final[dict[str, dict[str, frozenset[str]]]] = {
    "join": _same("owner operator member outsider admin"),
    "leave": _same(_EVERYONE),
    "room.sync": _same(_MEMBERS),
    "room.settings": _same("owner admin"),
    "play": _control(),
    "pause": _control(),
    "seek": _control(),
    "skip": _control(),
    "restart": _control(),
    "rate": _control(),
    "ready": _same(_MEMBERS),
    "ended": _same(_MEMBERS),
    "ad.start": _same(_MEMBERS),
    "ad.end": _same(_MEMBERS),
    "skip.vote": _same(_MEMBERS),
    "room.role": _same("owner admin"),
    "room.transfer": _same("owner admin"),
    "room.kick": _same("owner operator admin"),
    "room.ban": _same("owner operator admin"),
    "room.audit": _same("owner admin"),
    "room.close": _same("owner admin"),
    "queue.add": _same(_MEMBERS),
    "queue.load": _same(_MEMBERS),
    "queue.remove": _control(),  # an entry someone else added
    "queue.move": _control(),
    "queue.shuffle": _control(),
}


def expected(command: str, actor: Actor, mode: str) -> str | None:
    """None when allowed, else the error code: who is not in the room gets `not_member`
    (a banned user's `join` is `forbidden`), a member without the right `forbidden`."""
    if actor in ALLOWED[command][mode]:
        return None
    if actor in ("outsider", "banned") and command != "join":
        return "not_member"
    return "forbidden"
