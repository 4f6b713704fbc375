"""Every NATS subject ShareTube uses, built by functions: namespace first, ids last.

Commands are request/reply on `st.<service>.cmd.<command>`, served by a queue group named after
the service so any replica may answer. Room events go to `st.room.<code>.evt.<type>`; a gateway
subscribes to `st.room.<code>.evt.>` only while it has local members in that room.
"""

from typing import Final

PREFIX: Final = "st"
ROOM_EVENTS_WILDCARD: Final = f"{PREFIX}.room.*.evt.>"


def command(service: str, name: str) -> str:
    return f"{PREFIX}.{service}.cmd.{name}"


def service_commands(service: str) -> str:
    """The wildcard a service's replicas subscribe to (with queue group = service)."""
    return f"{PREFIX}.{service}.cmd.>"


def command_name(service: str, subject: str) -> str:
    return subject[len(f"{PREFIX}.{service}.cmd.") :]


def room_event(room: str, event_type: str) -> str:
    return f"{PREFIX}.room.{room}.evt.{event_type}"


def room_events(room: str) -> str:
    return f"{PREFIX}.room.{room}.evt.>"


def gateway_notice(kind: str) -> str:
    """Notices every gateway acts on (no queue group), e.g. `evict`."""
    return f"{PREFIX}.gateway.evt.{kind}"


GATEWAY_NOTICES: Final = f"{PREFIX}.gateway.evt.>"
# Scatter-gather: every process (gateways and service replicas) answers a request here; the
# asker collects the replies for a short window (GET /api/stats).
STATS_GATHER: Final = f"{PREFIX}.stats.gather"


def subject_template(subject: str) -> str:
    """The subject with its ids replaced, for span names and metric labels."""
    parts = subject.split(".")
    if len(parts) >= 4 and parts[1] == "room":
        parts[2] = "{room}"
    return ".".join(parts)
