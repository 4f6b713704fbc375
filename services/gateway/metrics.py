"""The gateway's metrics (STYLE.md point 10), beside the shared ones in common/metrics.py:

- `sharetube_gateway_connections` (gauge): open client sockets on this replica (the HPA /
  KEDA metric).
- `sharetube_gateway_rooms` (gauge): rooms with at least one local member (NATS
  subscriptions held).
- `sharetube_gateway_frames_received_total{type}` (counter): valid client frames by type.
- `sharetube_gateway_frames_sent_total{type}` (counter): frames sent: `reply`, or the event
  type for room events (counted once per room event, before fan-out).
- `sharetube_gateway_slow_consumer_closes_total` (counter): sockets closed because their
  send buffer was full.
- `sharetube_gateway_fanout_seconds` (histogram): time to hand one room event to every local
  member's buffer.
- `sharetube_gateway_sync_drift_seconds` (histogram): clients' reported drift of their
  player from the room's expected position, absolute.
- `sharetube_gateway_playback_rate` (histogram): the playback rate clients report with
  their drift (their correction nudges it around 1.0).
- `sharetube_gateway_sequence_checks_total{outcome}` (counter, declared in
  sequencecheck.py): room sequences checked after a command ended in `timeout` or
  `internal`; `resynced` when events had been committed and never published.
- `sharetube_gateway_sequence_swept_rooms_total{outcome}` (counter, declared in
  sequencesweep.py): rooms the periodic sweep compared with their committed version;
  `behind` when they were handed to a sequence check.
"""

from prometheus_client import Counter, Gauge, Histogram

from services.common.contracts.commands import GATEWAY_COMMANDS, ROUTES

CONNECTIONS = Gauge("sharetube_gateway_connections", "Open client sockets on this gateway")
ROOMS = Gauge("sharetube_gateway_rooms", "Rooms with at least one member on this gateway")
FRAMES_RECEIVED = Counter(
    "sharetube_gateway_frames_received_total", "Valid client frames by type", ["type"]
)
FRAMES_SENT = Counter(
    "sharetube_gateway_frames_sent_total", "Frames sent (reply or event type)", ["type"]
)
SLOW_CONSUMER_CLOSES = Counter(
    "sharetube_gateway_slow_consumer_closes_total",
    "Sockets closed because their send buffer was full",
)
FANOUT_SECONDS = Histogram(
    "sharetube_gateway_fanout_seconds",
    "Time to hand one room event to every local member",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)
# Clients nudge playbackRate under ~0.5 s and seek past it (clients/js); the buckets bracket
# those thresholds and what a person notices (~40 ms lip-sync, ~0.2 s between screens).
SYNC_DRIFT_SECONDS = Histogram(
    "sharetube_gateway_sync_drift_seconds",
    "Clients' reported absolute drift from the expected position",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1, 2, 5, 10),
)
PLAYBACK_RATE = Histogram(
    "sharetube_gateway_playback_rate",
    "Playback rate clients report with their drift",
    buckets=(0.5, 0.9, 0.95, 0.98, 0.99, 1.0, 1.01, 1.02, 1.05, 1.1, 2),
)

# Frame types are a closed set; anything else counts as `other` (bounded labels).
KNOWN_TYPES = frozenset(ROUTES) | GATEWAY_COMMANDS


def frame_type(name: str) -> str:
    return name if name in KNOWN_TYPES else "other"
