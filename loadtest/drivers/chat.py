"""chat: chat.send straight to the chat service over the bus.

Messages go round-robin over the rooms and their members (the per-user rate limit applies
per member: R x M senders share the rate). A message is persisted when its send is
acknowledged, and delivered when its `chat` event arrives on the room's subject; each text
is unique, so the event names its send. Every acknowledged message must be delivered.

With `--reads`, each operation is the chat part of a join's snapshot (`chat.history` of the
gateway's page size) by a member, round-robin, over rooms of HISTORY_KEPT messages each.
"""

import secrets
from typing import Any

from services.common.contracts.commands import SNAPSHOT_CHAT_MESSAGES

from ..busclient import envelope
from ..population import BusRoom
from ..stats import Histogram
from .base import Defaults
from .busdriver import BusDriver

HISTORY_KEPT = 20  # messages each room holds for --reads: a page shorter than the limit


class ChatDriver(BusDriver):
    service = "chat"
    transport = (
        "NATS request/reply on st.chat.cmd.send (the gateway's envelope); "
        "delivery: events on st.room.<code>.evt.chat"
    )
    defaults = Defaults(rooms=50, members=4, rate=100.0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.run_tag = secrets.token_hex(3)
        self.sent: dict[str, float] = {}  # text -> due, until delivered
        self.acked: list[str] = []
        self.delivered: set[str] = set()
        self.delivery = Histogram()

    def scenario(self) -> str:
        if self.options.reads:
            return (
                f"{super().scenario()}; chat.history of {SNAPSHOT_CHAT_MESSAGES} round-robin, "
                f"{HISTORY_KEPT} messages a room"
            )
        return f"{super().scenario()}; chat.send round-robin over every member"

    async def prepare(self) -> None:
        assert self.population is not None
        if self.options.reads:
            await self._prepare_reads()
            return
        self.population.hooks.append(self._on_event)

    def _on_event(self, _room: BusRoom, kind: str, event: dict[str, Any], at: float) -> None:
        if kind != "chat":
            return
        text = (event.get("data") or {}).get("text")
        due = self.sent.pop(text, None)
        if due is not None:
            self.delivery.add((at - due) * 1000)
            self.delivered.add(text)

    async def operation(self, index: int, due: float) -> None:
        if self.options.reads:
            await self._history(index, due)
            return
        assert self.population is not None and self.bus is not None
        room, actor = self.population.member_at(index)
        text = f"load {self.run_tag} {index}"
        self.sent[text] = due
        reply = await self.bus.request("chat.send", envelope(actor, room.code, {"text": text}), due)
        self.count("chat.send", reply)
        if reply.ok:
            self.acked.append(text)
        else:
            self.sent.pop(text, None)

    async def settle(self) -> dict[str, Any]:
        checks = await super().settle()  # waits for the rooms' last versions to arrive
        if self.options.reads:
            return checks
        undelivered = sum(1 for text in self.acked if text not in self.delivered)
        elapsed = max(self.options.duration_s, 1e-9)
        checks["lost"] += undelivered
        checks["messages"] = {
            "persisted": len(self.acked),
            "persisted_per_s": round(len(self.acked) / elapsed, 2),
            "delivered": self.delivery.count,
            "delivered_per_s": round(self.delivery.count / elapsed, 2),
            "undelivered": undelivered,
        }
        checks["delivered_ms"] = self.delivery.summary()
        m = checks["messages"]
        checks["notes"] = [
            f"messages: {m['persisted']} persisted ({m['persisted_per_s']}/s, acknowledged), "
            f"{m['delivered']} delivered ({m['delivered_per_s']}/s, events on the room "
            f"subject), {undelivered} acknowledged but never delivered"
        ]
        return checks

    # -- --reads: the chat part of a join's snapshot ---------------------------------------

    async def _prepare_reads(self) -> None:
        assert self.population is not None
        for room in self.population.rooms:
            for i in range(HISTORY_KEPT):
                actor = room.members[i % len(room.members)]
                await self.population.expect("chat.send", actor, room.code, {"text": f"m{i}"})

    async def _history(self, index: int, due: float) -> None:
        assert self.population is not None and self.bus is not None
        room, actor = self.population.member_at(index)
        data = {"limit": SNAPSHOT_CHAT_MESSAGES}
        reply = await self.bus.request("chat.history", envelope(actor, room.code, data), due)
        if reply.ok and len(reply.data["messages"]) != HISTORY_KEPT:
            self.tallies["chat.history"].failed("wrong_messages")  # a page that lost some
        else:
            self.count("chat.history", reply)
