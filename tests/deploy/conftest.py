"""The chart checks of deploy/helm/check.py, and the helm binary `make helm-check` unpacks."""

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("helm_check", ROOT / "deploy/helm/check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def chart() -> ModuleType:
    check = _load_check()
    if not check.helm_binary().exists():
        pytest.fail(f"no helm at {check.helm_binary()}: run `make helm-check` (make test does)")
    return check
