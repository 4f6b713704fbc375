"""The janitor's pure parts: when a gateway counts as dead, what it retains, job outcomes."""

import pytest

from services.common.contracts.errors import ErrorCode, ServiceError
from services.janitor.jobs import Jobs
from services.janitor.service import run_job
from services.janitor.settings import JanitorSettings


def jobs(**env: float) -> Jobs:
    settings = JanitorSettings(gateway_dead_after_seconds=15, **env)  # type: ignore[arg-type]
    return Jobs(None, None, settings)  # type: ignore[arg-type]


def test_a_gateway_is_dead_only_after_missing_for_the_whole_grace() -> None:
    j = jobs()
    holding = {"gw-a", "gw-b"}
    assert j.dead_gateways(holding, {"gw-a", "gw-b"}, now_s=0) == []
    assert j.dead_gateways(holding, {"gw-a"}, now_s=10) == []  # first seen missing
    assert j.dead_gateways(holding, {"gw-a"}, now_s=24) == []
    assert j.dead_gateways(holding, {"gw-a"}, now_s=25) == ["gw-b"]
    assert j.dead_gateways(holding, {"gw-a"}, now_s=26) == ["gw-b"], "until its sessions go"


def test_a_gateway_that_beats_again_starts_over() -> None:
    """A Redis restart loses every key; gateways write theirs again within seconds."""
    j = jobs()
    holding = {"gw-a"}
    assert j.dead_gateways(holding, set(), now_s=0) == []
    assert j.dead_gateways(holding, {"gw-a"}, now_s=5) == []
    assert j.dead_gateways(holding, set(), now_s=14) == []
    assert j.dead_gateways(holding, set(), now_s=20) == []
    assert j.dead_gateways(holding, set(), now_s=29) == ["gw-a"]


def test_a_new_leader_forgets_what_it_saw_before() -> None:
    j = jobs()
    j.dead_gateways({"gw-a"}, set(), now_s=0)
    j.forget()
    assert j.dead_gateways({"gw-a"}, set(), now_s=100) == []


def test_gateways_without_sessions_are_not_its_business() -> None:
    j = jobs()
    assert j.dead_gateways(set(), set(), now_s=0) == []
    assert j.dead_gateways({"gw-a"}, {"gw-a", "gw-idle"}, now_s=100) == []


def test_every_kind_of_data_has_a_retention_job_with_its_owner() -> None:
    names = [name for name, _job in jobs().maintenance()]
    assert names[0] == "close_idle"
    assert set(names[1:]) == {
        "retention_chat_messages",
        "retention_rooms_audit",
        "retention_queue_entries",
        "retention_auth_guests",
        "retention_rooms_commands",
        "retention_queue_commands",
        "retention_chat_commands",
    }
    keep = {(r.service, r.kind): r.keep_ms for r in jobs(command_log_retention_hours=2).retention}
    assert keep[("rooms", "commands")] == 2 * 3600 * 1000


@pytest.mark.parametrize(
    ("outcome", "ok"),
    [(None, True), (ServiceError(ErrorCode.UNAVAILABLE), False), (RuntimeError("bug"), False)],
)
async def test_a_failing_job_is_counted_and_does_not_raise(outcome: object, ok: bool) -> None:
    async def job() -> int:
        if isinstance(outcome, Exception):
            raise outcome
        return 1

    assert await run_job("test", job) is ok
