"""Checks that a stream's versions `v` arrive each once, in order, with nothing missing.

Every change to a room takes the room's next version and publishes exactly one event with it
(services/rooms/transaction.py, services/queue, services/chat), so per room the versions are
1, 2, 3, ... with no hole. On the bus itself two replicas may publish a room's consecutive
events a moment out of order (each publishes after its own commit); the gateway holds an
early event up to `reorder_wait_s` (0.25 s) for its predecessor. So a bus listener counts:

- `out_of_order`: a version that came after a later one but within the hold window (what
  the gateway puts back in order: informational);
- `reordered`: one that came later than that (the gateway would have passed the gap on: a
  real fault), and `duplicates`: one seen twice (a fault too);
- `lost`: a version never seen, inside the run or at its tail (`close` with the final one).

A socket behind the gateway is checked with a hold of 0: it must see strictly increasing v.
"""

from dataclasses import dataclass, field
from typing import Any

# The gateway's reorder window (GatewaySettings.reorder_wait_s).
BUS_HOLD_S = 0.25


@dataclass
class VersionStream:
    """One room's (or one socket's) versions.

    `after`: every version past it must arrive (0 for a room watched since its creation, a
    join snapshot's `v` for a socket, whose first events may still be at or below it); None
    starts at the first version seen.
    """

    hold_s: float = 0.0
    after: int | None = None
    highest: int | None = None
    received: int = 0
    out_of_order: int = 0
    reordered: int = 0
    duplicates: int = 0
    lost_tail: int = 0
    # version -> when it was found missing (a later one arrived first)
    missing_since: dict[int, float] = field(default_factory=dict)

    def see(self, v: int, at_s: float) -> None:
        self.received += 1
        if self.highest is None:
            self.highest = v - 1 if self.after is None else min(v - 1, self.after)
        if v > self.highest:
            for gap in range(self.highest + 1, v):
                self.missing_since[gap] = at_s
            self.highest = v
            return
        found = self.missing_since.pop(v, None)
        if found is None:  # seen already, or older than where the stream started
            self.duplicates += 1
        elif at_s - found <= self.hold_s:
            self.out_of_order += 1
        else:
            self.reordered += 1

    def close(self, final_v: int | None) -> None:
        """The run is over; `final_v` is the last version that exists (None: unknown)."""
        highest = self.highest if self.highest is not None else self.after
        if final_v is not None and highest is not None and final_v > highest:
            self.lost_tail = final_v - highest

    @property
    def lost(self) -> int:
        return len(self.missing_since) + self.lost_tail

    @property
    def faults(self) -> int:
        return self.lost + self.reordered + self.duplicates


def combine(streams: list[VersionStream]) -> dict[str, Any]:
    """The counts of many streams, as the report has them."""
    return {
        "streams": len(streams),
        "received": sum(s.received for s in streams),
        "lost": sum(s.lost for s in streams),
        "reordered": sum(s.reordered for s in streams),
        "duplicates": sum(s.duplicates for s in streams),
        "out_of_order_within_hold": sum(s.out_of_order for s in streams),
    }
