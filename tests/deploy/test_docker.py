"""The Dockerfile and docker-compose.yml, checked statically (no Docker engine runs here)."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.deploy.conftest import REPO, STAGES

DOCKERFILE = REPO / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def test_dockerfile_is_multi_stage_with_a_node_web_build() -> None:
    stages = _stages()
    names = [re.search(r"\bAS\s+(\S+)", s[0][1], re.IGNORECASE) for s in stages]
    assert [m.group(1) if m else None for m in names] == ["web", "build", "runtime"]
    web = " ".join(rest for _, rest in stages[0])
    assert "NODE_IMAGE" in stages[0][0][1] and "npm ci" in web and "npm run build" in web
    args = dict(rest.split("=", 1) for keyword, rest in _instructions() if keyword == "ARG" and "=" in rest)
    assert args["NODE_IMAGE"].startswith("node:")
    assert re.match(r"python:3\.11-slim", args["PYTHON_IMAGE"])


def test_runtime_stage_is_non_root_and_runs_vigil() -> None:
    runtime = _stages()[-1]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert int(users[-1].split(":")[0]) >= 10000  # matches the chart's runAsUser
    entrypoints = [rest for keyword, rest in runtime if keyword == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) == ["vigil"]
    copies = [rest for keyword, rest in runtime if keyword == "COPY"]
    assert any(c.startswith("--from=build ") for c in copies)
    assert any(c.startswith("--from=web ") for c in copies)
    env = " ".join(rest for keyword, rest in runtime if keyword == "ENV")
    # Read-only root filesystem: no bytecode writes, HOME and state under the /tmp volume.
    for needle in ("PYTHONDONTWRITEBYTECODE=1", "HOME=/tmp", "VIGIL_STATE_DIR=/tmp/"):
        assert needle in env


def test_build_stage_copies_every_package_of_the_project() -> None:
    import tomllib

    packages = {
        p["include"] for p in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["poetry"]["packages"]
    }
    build = _stages()[1]
    copied = {rest.split()[0].rstrip("/") for keyword, rest in build if keyword == "COPY"}
    assert packages <= copied, f"Dockerfile misses {sorted(packages - copied)}"
    assert {"pyproject.toml", "poetry.lock"} <= set(
        " ".join(rest for keyword, rest in build if keyword == "COPY").split()
    )


def test_dockerfile_holds_no_secrets_or_remote_adds() -> None:
    for keyword, rest in _instructions():
        assert not (keyword == "ADD" and re.search(r"https?://", rest)), rest
        assert not re.search(r"(PASSWORD|SECRET|TOKEN)\s*=", rest, re.IGNORECASE), rest


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".vigil", "web/node_modules"} <= ignored


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def test_compose_runs_the_stack_every_stage_and_the_generator() -> None:
    services = _compose()["services"]
    for stage in STAGES:
        assert services[stage]["command"] == ["run", stage], stage
        assert services[stage]["build"] == "."
        assert services[stage]["read_only"] is True
        assert services[stage]["cap_drop"] == ["ALL"]
        assert services[stage]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "healthz" in " ".join(services[stage]["healthcheck"]["test"])
    assert services["generator"]["command"][0] == "generate"
    assert services["migrate"]["command"] == ["db", "upgrade"]
    kafka = services["kafka"]["environment"]
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft, no ZooKeeper
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert services["mlflow"]["entrypoint"] == ["mlflow"]
    assert services["api"]["ports"] == ["8000:8000"]


def test_compose_api_probes_each_stream_service_by_its_compose_name_on_its_ops_port() -> None:
    services = _compose()["services"]
    targets = json.loads(services["api"]["environment"]["VIGIL_STATUS_OPS_TARGETS"])
    assert set(targets) == set(STAGES) - {"api"}
    for stage, url in targets.items():
        port = services[stage]["environment"]["VIGIL_METRICS_PORT"]
        assert url == f"http://{stage}:{port}", stage
