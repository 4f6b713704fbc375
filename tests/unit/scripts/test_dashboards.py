"""scripts/dashboards.py: the committed dashboards are what it writes, and every metric a
service declares is on one of them (a new metric without a panel fails here)."""

import json
import re
from pathlib import Path

from scripts import dashboards

ROOT = Path(__file__).resolve().parents[3]
DECLARED = re.compile(r"\b(?:Counter|Gauge|Histogram|Summary)\(\s*\"(sharetube_[a-z0-9_]+)\"")


def boards() -> dict[str, dict]:
    return {
        "overview": dashboards.overview(),
        "gateway": dashboards.gateway(),
        "rooms": dashboards.rooms(),
        "queue": dashboards.queue(),
        "chat": dashboards.chat(),
        "auth": dashboards.auth(),
        "janitor": dashboards.janitor(),
        "sync": dashboards.sync(),
    }


def test_the_committed_dashboards_are_the_generated_ones() -> None:
    committed = {p.stem for p in dashboards.OUT.glob("*.json")}
    generated = boards()
    assert committed == set(generated)
    for name, board in generated.items():
        on_disk = json.loads((dashboards.OUT / f"{name}.json").read_text())
        assert on_disk == board, f"{name}.json: run python scripts/dashboards.py"


def test_every_declared_metric_is_on_a_dashboard() -> None:
    declared = {
        name
        for path in (ROOT / "services").rglob("*.py")
        for name in DECLARED.findall(path.read_text())
    }
    assert len(declared) > 25  # the scan finds the declarations at all
    queries = " ".join(
        target["expr"]
        for board in boards().values()
        for p in board["panels"]
        for target in p.get("targets", [])
    )
    used = set(re.findall(r"sharetube_[a-z0-9_]+", queries))
    # A histogram is read through its _bucket, _sum or _count series.
    used |= {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert declared - used == set()
