import os
import uuid

from pydantic import Field

from services.common.settings import CommonSettings

_DAY_S = 24 * 3600


class JanitorSettings(CommonSettings):
    # Who this replica is in the lease (and in logs); unique per process.
    instance_id: str = Field(
        default_factory=lambda: f"{os.uname().nodename[:20]}-{os.getpid()}-{uuid.uuid4().hex[:4]}",
        alias="JANITOR_INSTANCE_ID",
    )
    # The leader's lease in Redis: renewed every third of it, so one missed renewal (a GC
    # pause, a slow Redis) costs nothing; when the leader dies, a standby takes over as soon
    # as the key expires, i.e. within one lease. 15 s keeps takeover quick and renewals rare.
    background_task_lease_seconds: float = 15.0

    # Presence. A sweep every few seconds bounds how late an away member is removed.
    presence_sweep_interval_seconds: float = 5.0
    # How long a member whose sockets dropped keeps their place (shown away) before they
    # leave the room for everyone: long enough for a page reload, a network switch or a
    # gateway rollout (clients reconnect within seconds), short enough that the member list
    # does not lie for long.
    presence_away_timeout_seconds: float = 60.0
    # A gateway whose heartbeat key is missing for this long (as seen by the leader) is dead
    # and its sessions go away. The key lives 3 gateway heartbeats (15 s); waiting as long
    # again rides out a Redis restart that lost the keys (gateways rewrite within 5 s).
    gateway_dead_after_seconds: float = 15.0

    # Everything else runs on a slower beat: nothing in it is urgent.
    maintenance_interval_seconds: float = 600.0
    # A room nobody has been in for a day closes (its queue and chat go with it): codes are
    # shared by link, and a party that meets again the next evening makes a new room in a
    # click. The seed kept rooms for about as long.
    room_close_after_empty_seconds: float = float(_DAY_S)
    # Chat and audit are for the party and for moderation, not an archive.
    chat_retention_days: float = 30.0
    audit_retention_days: float = 90.0
    # Idempotency replies: a client retries within seconds (a reconnect); a day is ample.
    command_log_retention_hours: float = 24.0
    # Played and removed queue entries (the queue only shows what is still to come).
    queue_history_retention_days: float = 7.0
    # Guests are purged after this, and never while their token could still be valid
    # (auth enforces ACCESS_TOKEN_EXPIRES_SECONDS as the floor).
    guest_retention_days: float = 30.0
    # Rows one call may delete; a job repeats the call up to `batches_per_run` times, so a
    # backlog is trimmed in short transactions over several runs.
    batch_size: int = 1000
    batches_per_run: int = 20
