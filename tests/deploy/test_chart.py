"""The Helm chart, rendered by the real helm binary and checked on the parsed objects.

STYLE.md point 13: the chart is a matrix, every service the same small set of objects; a PDB
only where a service runs more than one replica; HPA and KEDA never both.
"""

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/sharetube"
DASHBOARDS = ROOT / "deploy/grafana/dashboards"
SERVICES = ("gateway", "rooms", "queue", "chat", "auth", "janitor")
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())
PRODUCTION = yaml.safe_load((CHART / "values-production.yaml").read_text())

Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def default(chart: ModuleType) -> list[Manifest]:
    return chart.render()


@pytest.fixture(scope="module")
def production(chart: ModuleType) -> list[Manifest]:
    return chart.render("-f", str(chart.PRODUCTION_VALUES))


def of_kind(docs: list[Manifest], kind: str) -> dict[str, Manifest]:
    """Objects of one kind by their component label (or name, for global objects)."""
    found: dict[str, Manifest] = {}
    for doc in docs:
        if doc["kind"] == kind:
            meta = doc["metadata"]
            key = meta.get("labels", {}).get("app.kubernetes.io/component", meta["name"])
            if key == "dashboards":  # one ConfigMap per dashboard file
                key = meta["name"]
            assert key not in found, f"two {kind} objects for {key}"
            found[key] = doc
    return found


def sets(*settings: str) -> list[str]:
    return [arg for setting in settings for arg in ("--set", setting)]


def container(deployment: Manifest) -> Manifest:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env(c: Manifest) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def merged(component: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """values.yaml's block for a service with an override file's block on top (one level)."""
    values = dict(DEFAULTS[component])
    for key, value in overrides.get(component, {}).items():
        values[key] = {**values[key], **value} if isinstance(value, dict) else value
    return values


# ---------------------------------------------------------------- the matrix


@pytest.mark.parametrize("variant", ["default", "production"])
def test_one_deployment_per_service_with_its_replicas_and_command(
    variant: str, request: pytest.FixtureRequest
) -> None:
    docs = request.getfixturevalue(variant)
    overrides = PRODUCTION if variant == "production" else {}
    deployments = of_kind(docs, "Deployment")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        values = merged(name, overrides)
        autoscaled = values["autoscaling"]["enabled"] or values["keda"]["enabled"]
        # An autoscaler owns the count; a replicas field would fight it on every upgrade.
        assert deployment["spec"].get("replicas") == (None if autoscaled else values["replicas"])
        assert container(deployment)["command"] == ["python", "-m", f"services.{name}"]
        assert deployment["spec"]["template"]["spec"]["containers"][0]["name"] == name


def test_every_service_renders_the_same_objects(chart: ModuleType) -> None:
    docs = chart.render("--set", "metrics.serviceMonitor.enabled=true")
    for kind in ("Deployment", "Service", "ServiceMonitor"):
        assert set(of_kind(docs, kind)) == set(SERVICES), kind


def test_every_service_module_is_in_the_chart(default: list[Manifest]) -> None:
    modules = {p.parent.name for p in (ROOT / "services").glob("*/__main__.py")}
    assert modules <= set(of_kind(default, "Deployment")), "a service the chart does not run"
    assert set(SERVICES) == {k for k in DEFAULTS if isinstance(DEFAULTS[k], dict)} & set(SERVICES)


def test_every_service_values_block_has_the_same_shape() -> None:
    shapes = {name: _shape(DEFAULTS[name]) for name in SERVICES}
    assert len({json.dumps(s, sort_keys=True) for s in shapes.values()}) == 1, shapes


def _shape(values: Any) -> Any:
    if isinstance(values, dict):
        # Lists and free-form maps (podsMetrics, triggers, labels) may differ in content.
        return {k: _shape(v) for k, v in values.items() if not isinstance(v, list)}
    return type(values).__name__ if values is not None else None


def test_a_service_can_be_switched_off(chart: ModuleType) -> None:
    docs = chart.render(*sets("janitor.enabled=false", "rooms.replicas=3"))
    assert "janitor" not in of_kind(docs, "Deployment")
    assert "janitor" not in of_kind(docs, "Service")
    assert of_kind(docs, "Deployment")["rooms"]["spec"]["replicas"] == 3


# ---------------------------------------------------------------- PDB, HPA, KEDA


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ([], {"gateway", "rooms"}),
        (
            ["gateway.replicas=1", "queue.replicas=3", "janitor.replicas=2"],
            {"rooms", "queue", "janitor"},
        ),
        # Autoscaled: minReplicas decides, whatever replicas says.
        (["chat.autoscaling.enabled=true", "chat.autoscaling.minReplicas=1"], {"gateway", "rooms"}),
        (
            ["auth.keda.enabled=true", "auth.replicas=1", "auth.autoscaling.minReplicas=2"],
            {"gateway", "rooms", "auth"},
        ),
    ],
)
def test_a_pdb_only_where_a_service_runs_more_than_one_replica(
    chart: ModuleType, settings: list[str], expected: set[str]
) -> None:
    pdbs = of_kind(chart.render(*sets(*settings)), "PodDisruptionBudget")
    assert set(pdbs) == expected
    for name, pdb in pdbs.items():
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == name


def test_production_has_a_pdb_for_every_service(production: list[Manifest]) -> None:
    assert set(of_kind(production, "PodDisruptionBudget")) == set(SERVICES)


def test_hpa_and_keda_never_both(production: list[Manifest]) -> None:
    hpas = of_kind(production, "HorizontalPodAutoscaler")
    scaled = of_kind(production, "ScaledObject")
    assert not set(hpas) & set(scaled)
    assert set(scaled) == {"gateway"}
    assert set(hpas) == {"rooms", "queue", "chat"}


def test_both_autoscalers_on_one_service_is_refused(chart: ModuleType) -> None:
    with pytest.raises(chart.RenderError, match="keda"):
        chart.render(*sets("rooms.autoscaling.enabled=true", "rooms.keda.enabled=true"))


def test_gateway_hpa_scales_on_cpu_and_connections(chart: ModuleType) -> None:
    docs = chart.render("--set", "gateway.autoscaling.enabled=true")
    hpa = of_kind(docs, "HorizontalPodAutoscaler")["gateway"]
    assert "ScaledObject" not in {d["kind"] for d in docs}
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": of_kind(docs, "Deployment")["gateway"]["metadata"]["name"],
    }
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "sharetube_gateway_connections"
    assert "replicas" not in of_kind(docs, "Deployment")["gateway"]["spec"]


def test_keda_without_triggers_scales_on_cpu(chart: ModuleType) -> None:
    docs = chart.render("--set", "queue.keda.enabled=true")
    scaled = of_kind(docs, "ScaledObject")["queue"]
    assert scaled["spec"]["triggers"] == [
        {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "70"}}
    ]
    assert "queue" not in of_kind(docs, "HorizontalPodAutoscaler")
    chart.validate(scaled)


def test_keda_triggers_are_templated(production: list[Manifest]) -> None:
    (prometheus, _cpu) = of_kind(production, "ScaledObject")["gateway"]["spec"]["triggers"]
    assert 'namespace="sharetube"' in prometheus["metadata"]["query"]


# ---------------------------------------------------------------- pods


@pytest.mark.parametrize("variant", ["default", "production"])
def test_probes_on_every_service(variant: str, request: pytest.FixtureRequest) -> None:
    for name, deployment in of_kind(request.getfixturevalue(variant), "Deployment").items():
        c = container(deployment)
        port = "http" if name == "gateway" else "metrics"
        assert [p["name"] for p in c["ports"]] == [port]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
        assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": port}


def test_ports_and_their_environment(default: list[Manifest]) -> None:
    deployments = of_kind(default, "Deployment")
    gateway = container(deployments["gateway"])
    assert gateway["ports"][0]["containerPort"] == 8000
    assert env(gateway)["PORT"] == "8000"
    assert env(gateway)["HOST"] == "0.0.0.0"
    assert "METRICS_PORT" not in env(gateway)  # it serves /metrics on PORT
    for name in set(SERVICES) - {"gateway"}:
        c = container(deployments[name])
        assert c["ports"][0]["containerPort"] == 9100
        assert env(c)["METRICS_PORT"] == "9100"
        assert env(c)["OTEL_SERVICE_NAME"] == f"sharetube-{name}"


def test_services_select_their_own_pods(default: list[Manifest]) -> None:
    deployments = of_kind(default, "Deployment")
    for name, service in of_kind(default, "Service").items():
        pod_labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert service["spec"]["selector"]["app.kubernetes.io/component"] == name
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] == container(deployments[name])["ports"][0]["name"]


def _pods(docs: list[Manifest]) -> dict[str, Manifest]:
    pods = {n: d["spec"]["template"]["spec"] for n, d in of_kind(docs, "Deployment").items()}
    pods.update({n: d["spec"]["template"]["spec"] for n, d in of_kind(docs, "Job").items()})
    return pods


@pytest.mark.parametrize("variant", ["default", "production"])
def test_pods_run_as_non_root_on_a_read_only_root(
    variant: str, request: pytest.FixtureRequest
) -> None:
    pods = _pods(request.getfixturevalue(variant))
    assert set(pods) == {*SERVICES, "migrations"}
    for name, pod in pods.items():
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] != 0, name
        assert pod["automountServiceAccountToken"] is False, name
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"], name


def test_root_is_refused(chart: ModuleType) -> None:
    with pytest.raises(chart.RenderError, match="runAsNonRoot"):
        chart.render("--set", "podSecurityContext.runAsNonRoot=false")


def test_gateway_rollout_drains_websockets(production: list[Manifest]) -> None:
    gateway = of_kind(production, "Deployment")["gateway"]
    assert gateway["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = gateway["spec"]["template"]["spec"]
    sleep = container(gateway)["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and int(sleep[1]) > 0
    # preStop, then the gateway's own shutdown (sockets closed with 1001, uvicorn's 10 s).
    assert pod["terminationGracePeriodSeconds"] >= int(sleep[1]) + 10
    assert pod["terminationGracePeriodSeconds"] >= 60


def test_services_on_nats_need_no_prestop(default: list[Manifest]) -> None:
    for name, deployment in of_kind(default, "Deployment").items():
        if name != "gateway":
            assert "lifecycle" not in container(deployment)


def test_extra_env_overrides_without_duplicates(chart: ModuleType) -> None:
    docs = chart.render(
        *sets(
            "extraEnv[0].name=LOG_FORMAT",
            "extraEnv[0].value=json",
            "gateway.extraEnv[0].name=PORT",
            "gateway.extraEnv[1].name=LOG_FORMAT",
            "gateway.extraEnv[1].value=text",
        ),
        "--set-string",
        "gateway.extraEnv[0].value=8080",
    )
    for name, deployment in of_kind(docs, "Deployment").items():
        names = [e["name"] for e in container(deployment)["env"]]
        assert len(names) == len(set(names)), names  # server-side apply refuses duplicates
        assert env(container(deployment))["LOG_FORMAT"] == ("text" if name == "gateway" else "json")
    assert env(container(of_kind(docs, "Deployment")["gateway"]))["PORT"] == "8080"


# ---------------------------------------------------------------- config and secrets


def test_config_and_secrets_reach_every_service(default: list[Manifest]) -> None:
    config = of_kind(default, "ConfigMap")["sharetube-config"]
    secret = of_kind(default, "Secret")["sharetube-secrets"]
    assert config["data"]["SHARETUBE_ENV"] == "production"
    assert config["data"]["NATS_URL"] == DEFAULTS["nats"]["url"]
    assert config["data"]["ACCESS_TOKEN_EXPIRES_SECONDS"] == "1209600"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in config["data"]  # tracing off unless set
    assert {"DATABASE_URL", "REDIS_URL", "JWT_SECRET"} <= set(secret["data"])
    assert not {"DATABASE_URL", "REDIS_URL", "JWT_SECRET"} & set(config["data"])
    for deployment in of_kind(default, "Deployment").values():
        sources = container(deployment)["envFrom"]
        assert sources == [
            {"configMapRef": {"name": "sharetube-config"}},
            {"secretRef": {"name": "sharetube-secrets"}},
        ]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert {"checksum/config", "checksum/secrets"} <= set(annotations)


def test_a_generated_jwt_secret_is_long(default: list[Manifest]) -> None:
    import base64

    secret = of_kind(default, "Secret")["sharetube-secrets"]
    assert len(base64.b64decode(secret["data"]["JWT_SECRET"])) >= 32


def test_an_existing_secret_replaces_the_charts(production: list[Manifest]) -> None:
    assert of_kind(production, "Secret") == {}
    for deployment in of_kind(production, "Deployment").values():
        assert {"secretRef": {"name": "sharetube-secrets"}} in container(deployment)["envFrom"]
    config = of_kind(production, "ConfigMap")["sharetube-config"]["data"]
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http")
    assert config["PLAYBACK_START_TIMEOUT_MS"] == "4000"


# ---------------------------------------------------------------- migrations


def _hook(doc: Manifest) -> dict[str, str]:
    return {
        k.removeprefix("helm.sh/"): v
        for k, v in doc["metadata"].get("annotations", {}).items()
        if k.startswith("helm.sh/hook")
    }


def test_migrations_run_as_a_hook_before_install_and_upgrade(default: list[Manifest]) -> None:
    job = of_kind(default, "Job")["migrations"]
    hook = _hook(job)
    assert set(hook["hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in hook["hook-delete-policy"]
    c = container(job)
    assert c["command"] == ["alembic", "upgrade", "head"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # Hooks run before the release's Secret exists: the Job reads a hook Secret made first.
    ref = _database_url_ref(c)
    hook_secret = next(
        d for d in default if d["kind"] == "Secret" and d["metadata"]["name"] == ref["name"]
    )
    assert set(_hook(hook_secret)["hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert int(_hook(hook_secret)["hook-weight"]) < int(hook["hook-weight"])
    assert ref["key"] in hook_secret["data"]


def _database_url_ref(c: Manifest) -> dict[str, str]:
    (var,) = [e for e in c["env"] if e["name"] == "DATABASE_URL"]
    return var["valueFrom"]["secretKeyRef"]


def test_migrations_read_an_existing_secret(production: list[Manifest]) -> None:
    job = of_kind(production, "Job")["migrations"]
    ref = _database_url_ref(container(job))
    assert ref == {"name": "sharetube-secrets", "key": "DATABASE_URL"}


def test_the_migration_job_command_migrates_with_the_jobs_environment(
    default: list[Manifest], tmp_path: Path
) -> None:
    """The Job's command and env, run here against SQLite, on top of the image's ENV."""
    c = container(of_kind(default, "Job")["migrations"])
    job_env = {e["name"]: e.get("value") for e in c["env"]}
    job_env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'migrated.db'}"
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k not in {"JWT_SECRET", "DATABASE_URL"} and not k.startswith("SHARETUBE_")
    }
    image_env = {"SHARETUBE_ENV": "production", "PYTHONPATH": str(ROOT)}  # as the Dockerfile
    venv_bin = str(Path(sys.executable).parent)
    env = {**inherited, **image_env, **job_env, "PATH": f"{venv_bin}:{os.environ['PATH']}"}
    result = subprocess.run(c["command"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    with sqlite3.connect(tmp_path / "migrated.db") as db:
        (head,) = db.execute("select version_num from alembic_version").fetchone()
    assert head


def test_migrations_can_be_switched_off(chart: ModuleType) -> None:
    docs = chart.render("--set", "migrations.enabled=false")
    assert "Job" not in {d["kind"] for d in docs}
    assert [d for d in docs if _hook(d)] == []


# ---------------------------------------------------------------- ingress


def test_ingress_reaches_the_gateway_with_websocket_timeouts(production: list[Manifest]) -> None:
    (ingress,) = of_kind(production, "Ingress").values()
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    gateway = of_kind(production, "Service")["gateway"]["metadata"]["name"]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": gateway, "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]


def test_no_ingress_by_default(default: list[Manifest]) -> None:
    assert of_kind(default, "Ingress") == {}


# ---------------------------------------------------------------- Prometheus and Grafana


def test_service_monitors_carry_the_prometheus_release_label(chart: ModuleType) -> None:
    docs = chart.render(
        *sets("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom")
    )
    services = of_kind(docs, "Service")
    for name, monitor in of_kind(docs, "ServiceMonitor").items():
        assert monitor["metadata"]["labels"]["release"] == "prom"
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] == services[name]["spec"]["ports"][0]["name"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= (
            services[name]["metadata"]["labels"].items()
        )
        # job="<service>" in Prometheus, as when scraping `make run`.
        assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/component"


def test_no_service_monitors_unless_asked(default: list[Manifest]) -> None:
    assert of_kind(default, "ServiceMonitor") == {}


def test_every_dashboard_ships_as_a_labelled_configmap(default: list[Manifest]) -> None:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, "deploy/grafana/dashboards/ has no dashboard"
    shipped = {
        key: value
        for d in default
        if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"
        for key, value in d["data"].items()
    }
    assert set(shipped) == {f.name for f in files}
    for f in files:
        assert json.loads(shipped[f.name]) == json.loads(f.read_text())


def test_dashboard_label_and_folder_are_configurable(chart: ModuleType) -> None:
    docs = chart.render(
        *sets(
            "grafana.dashboards.labels.grafana_dashboard=null",
            "grafana.dashboards.labels.dashboards=sharetube",
            "grafana.dashboards.annotations.grafana_folder=ShareTube",
            "grafana.dashboards.namespace=monitoring",
        )
    )
    (dashboard, *_) = [d for d in docs if d["metadata"]["labels"].get("dashboards") == "sharetube"]
    assert "grafana_dashboard" not in dashboard["metadata"]["labels"]
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "ShareTube"}
    assert dashboard["metadata"]["namespace"] == "monitoring"


def test_dashboards_are_valid_grafana_json() -> None:
    for f in DASHBOARDS.glob("*.json"):
        dashboard = json.loads(f.read_text())
        assert dashboard["uid"] and dashboard["title"], f.name
        for panel in dashboard.get("panels", []):
            for target in panel.get("targets", []):
                assert target.get("expr"), f"{f.name}: panel {panel.get('title')} has no query"


# ---------------------------------------------------------------- values.schema.json


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("gateway.replicas=-1", "minimum"),
        ("rooms.replicas=two", "integer"),
        ("queue.bogus=1", "additional properties"),
        ("chat.autoscaling.targetCPUUtilizationPercentage=150", "maximum"),
        ("config.logLevel=LOUD", "one of"),
        ("database.url=mysql://db/sharetube", "pattern"),
        ("secrets.jwtSecret=short", "jwtSecret"),
        ("image.digest=latest", "pattern"),
        ("ingress.hosts[0].paths[0].pathType=Anything", "one of"),
        ("metrics.serviceMonitor.interval=often", "pattern"),
        ("gateway.probes.liveness.path=healthz", "pattern"),
    ],
)
def test_bad_values_fail_before_anything_renders(
    chart: ModuleType, setting: str, complaint: str
) -> None:
    with pytest.raises(chart.RenderError, match="schema") as failure:
        chart.render("--set", setting)
    assert complaint in str(failure.value)


def test_values_files_pass_the_schema(chart: ModuleType) -> None:
    for args in ([], ["-f", str(chart.PRODUCTION_VALUES)]):
        lint = chart.helm("lint", "--strict", str(CHART), *args)
        assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        (["rooms.autoscaling.minReplicas=5", "rooms.autoscaling.maxReplicas=3"], "minReplicas"),
        (["gateway.preStopSleepSeconds=60"], "preStopSleepSeconds"),
    ],
)
def test_combinations_that_cannot_work_fail(
    chart: ModuleType, settings: list[str], complaint: str
) -> None:
    with pytest.raises(chart.RenderError, match=complaint):
        chart.render(*sets(*settings))


# ---------------------------------------------------------------- Kubernetes' schemas


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-f", "PRODUCTION"],
        sets(
            "gateway.autoscaling.enabled=true",
            "metrics.serviceMonitor.enabled=true",
            "ingress.enabled=true",
            "secrets.googleClientSecret=g",
            "config.otlpEndpoint=http://otel:4318",
        ),
        sets("rooms.keda.enabled=true", "auth.autoscaling.enabled=true"),
    ],
    ids=["default", "production", "hpa-and-everything-on", "keda"],
)
def test_every_rendered_object_is_valid_for_kubernetes(chart: ModuleType, args: list[str]) -> None:
    args = [str(chart.PRODUCTION_VALUES) if a == "PRODUCTION" else a for a in args]
    docs = chart.render(*args)
    for doc in docs:
        chart.validate(doc)
    names = Counter((d["kind"], d["metadata"]["name"]) for d in docs)
    assert [n for n, count in names.items() if count > 1] == []
    assert all(d["metadata"]["namespace"] == chart.NAMESPACE for d in docs)


def test_crd_schemas_catch_mistakes(chart: ModuleType) -> None:
    import jsonschema

    docs = chart.render("-f", str(chart.PRODUCTION_VALUES))
    scaled = of_kind(docs, "ScaledObject")["gateway"]
    scaled["spec"]["triggers"][0]["metadata"]["threshold"] = 2000  # KEDA wants strings
    with pytest.raises(jsonschema.ValidationError):
        chart.validate(scaled)
    monitor = of_kind(docs, "ServiceMonitor")["rooms"]
    monitor["spec"]["endpoints"][0]["interval"] = "often"
    with pytest.raises(jsonschema.ValidationError):
        chart.validate(monitor)
