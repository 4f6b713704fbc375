"""A command that runs long, and a request nobody answers, leave a line in the logs.

Both are what an operator (or a failed benchmark's kept logs) needs to say which hop of a
`timeout` was slow: the caller logs the subject it gave up on, the service the command that
ran past `bus.SLOW_COMMAND_S`. On the session's NATS, under a service name nothing else uses.
"""

import asyncio
import logging
import uuid
from typing import Any

import pytest

from services.common import bus
from services.common.contracts import subjects
from services.common.contracts.envelope import CommandEnvelope
from services.common.contracts.errors import ErrorCode, ServiceError
from services.common.contracts.models import UserRef
from services.common.lograte import Sparse

pytestmark = pytest.mark.integration


def _envelope() -> CommandEnvelope:
    return CommandEnvelope(id=uuid.uuid4().hex, user=UserRef(id="u1", name="Ann"), data={})


async def test_a_command_past_the_slow_mark_is_logged_with_its_outcome(
    infra: dict[str, str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bus, "SLOW_COMMAND_S", 0.1)
    monkeypatch.setattr(bus, "_slow_commands", Sparse(bus.log))  # none written just before
    service = f"slow{uuid.uuid4().hex[:6]}"
    router = bus.CommandRouter(service)

    @router.command("nap")
    async def nap(env: CommandEnvelope, data: Any) -> dict[str, bool]:
        await asyncio.sleep(0.3)
        return {"rested": True}

    @router.command("quick")
    async def quick(env: CommandEnvelope, data: Any) -> dict[str, bool]:
        return {"rested": False}

    nc = await bus.connect(infra["NATS_URL"], "slow-test")
    try:
        await router.serve(nc, max_inflight=4)
        with caplog.at_level(logging.WARNING, logger=bus.__name__):
            rested = await bus.request(nc, subjects.command(service, "nap"), _envelope(), 5.0)
            quick_reply = await bus.request(
                nc, subjects.command(service, "quick"), _envelope(), 5.0
            )
    finally:
        await nc.close()
    assert rested == {"rested": True}
    assert quick_reply == {"rested": False}
    slow = [r.getMessage() for r in caplog.records if "slow command" in r.getMessage()]
    assert len(slow) == 1, slow
    assert slow[0].startswith(f"slow command nap on {subjects.command(service, 'nap')}: ")
    assert slow[0].endswith("s (ok)")


async def test_a_request_nobody_answers_in_time_is_logged_and_answered_timeout(
    infra: dict[str, str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bus, "_unanswered", Sparse(bus.log))
    subject = subjects.command(f"mute{uuid.uuid4().hex[:6]}", "anything")
    nc = await bus.connect(infra["NATS_URL"], "mute-test")
    try:
        heard: list[bytes] = []

        async def swallow(msg: Any) -> None:  # there, so NATS has a responder; never answers
            heard.append(msg.data)

        await nc.subscribe(subject, cb=swallow)
        await nc.flush()
        with caplog.at_level(logging.WARNING, logger=bus.__name__):
            with pytest.raises(ServiceError) as failed:
                await bus.request(nc, subject, _envelope(), 0.2)
        for _ in range(100):  # delivered, however busy the machine (bounded)
            if heard:
                break
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    assert failed.value.code is ErrorCode.TIMEOUT
    assert len(heard) == 1
    lines = [r.getMessage() for r in caplog.records]
    assert f"no reply on {subject} within 0.2 s" in lines
