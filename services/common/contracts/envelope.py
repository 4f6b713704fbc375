"""What travels on the bus between the gateway and the services, and between services."""

from typing import Any, Final

from pydantic import Field

from .base import Contract
from .models import QueueEntry, Role, RoomSettings, UserRef

MAX_REQUEST_ID: Final = 64


class CommandEnvelope(Contract):
    """A command on `st.<service>.cmd.<name>`.

    `id` is the client's request id: together with the user it is the idempotency key, so a
    retried command is applied once. `conn` names the socket (gateway id + connection number),
    for commands whose effect is per connection (join as a player, ready, disconnect).
    """

    id: str = Field(min_length=1, max_length=MAX_REQUEST_ID)
    user: UserRef
    room: str | None = None
    conn: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


# -- service to service ------------------------------------------------------------------


class AccessQuery(Contract):
    """`st.rooms.cmd.access`: may this user act on this room, and as what?"""

    room: str
    user_id: str


class AccessReply(Contract):
    member: bool
    role: Role | None
    banned: bool = False
    settings: RoomSettings


class AdvanceRequest(Contract):
    """`st.queue.cmd.advance`: take the next entry off the room's queue (rooms asks)."""

    room: str
    after_entry_id: str | None = None  # idempotency: advance only past this entry once


class AdvanceReply(Contract):
    entry: QueueEntry | None


class DisconnectNotice(Contract):
    """`st.rooms.cmd.disconnect`: a socket that had joined the room is gone."""

    room: str
    conn: str


class GuestRequest(Contract):
    name: str = Field(min_length=1, max_length=40)


class TokenReply(Contract):
    token: str
    user: UserRef
