"""Fixtures for the deployment checks: the tools (installed by the project's own script) and the
chart rendered with the default and the production-like values.

scripts/install-deploy-tools.sh builds helm from the Go module proxy and keeps kubernetes-validate,
checkov and python-hcl2 in their own venv under ~/.cache/vigil/tools, so `make test` installs them
without a Makefile change. No stack is needed: these tests are plain (not integration) tests.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "vigil"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
TERRAFORM = REPO / "terraform"
INSTALLER = REPO / "scripts" / "install-deploy-tools.sh"
# Kubernetes version the manifests are rendered for and validated against (helm 3.21 targets 1.36).
KUBE_VERSION = "1.36.0"
# Every stage runs as `vigil run <stage>` in its own Deployment (the process contract).
STAGES = ("ingest", "features", "detect-statistical", "detect-ml", "detect-rules", "alerting", "api")
STREAM_STAGES = tuple(stage for stage in STAGES if stage != "api")
WORKLOAD_KINDS = ("Deployment", "Job", "CronJob")


@dataclass(frozen=True)
class Tools:
    helm: Path
    terraform: Path | None  # None: neither terraform nor tofu could be found or built
    kubernetes_validate: Path
    checkov: Path
    python: Path


@dataclass(frozen=True)
class Rendered:
    """One `helm template` output: the file and its parsed documents."""

    name: str
    path: Path
    documents: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.documents if doc["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        matches = [doc for doc in self.of_kind(kind) if doc["metadata"]["name"] == name]
        assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
        return matches[0]


@pytest.fixture(scope="session")
def tools() -> Tools:
    """Install (idempotently) and locate the deployment tools."""
    result = subprocess.run(["bash", str(INSTALLER)], capture_output=True, text=True, timeout=1800, check=False)
    assert result.returncode == 0, f"install-deploy-tools.sh failed:\n{result.stderr[-4000:]}"
    found = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    paths = {key: Path(found[key]) for key in ("HELM", "KUBERNETES_VALIDATE", "CHECKOV", "TOOLS_PYTHON")}
    for key, path in paths.items():
        assert path.exists(), f"{key} reported at {path}, which does not exist"
    return Tools(
        helm=paths["HELM"],
        terraform=Path(found["TERRAFORM"]) if found.get("TERRAFORM") else None,
        kubernetes_validate=paths["KUBERNETES_VALIDATE"],
        checkov=paths["CHECKOV"],
        python=paths["TOOLS_PYTHON"],
    )


def helm_template(tools: Tools, *args: str) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart as release `vigil` in namespace `vigil`."""
    command = [str(tools.helm), "template", "vigil", str(CHART), "--namespace", "vigil"]
    command += ["--kube-version", KUBE_VERSION, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _render(tools: Tools, directory: Path, name: str, *args: str) -> Rendered:
    result = helm_template(tools, *args)
    assert result.returncode == 0, f"helm template ({name}) failed:\n{result.stderr}"
    path = directory / f"{name}.yaml"
    path.write_text(result.stdout)
    documents = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return Rendered(name=name, path=path, documents=documents)


@pytest.fixture(scope="session")
def rendered_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rendered")


@pytest.fixture(scope="session")
def default_render(tools: Tools, rendered_dir: Path) -> Rendered:
    return _render(tools, rendered_dir, "default")


@pytest.fixture(scope="session")
def production_render(tools: Tools, rendered_dir: Path) -> Rendered:
    return _render(tools, rendered_dir, "production", "--values", str(PRODUCTION_VALUES))


@pytest.fixture(scope="session", params=["default", "production"])
def render(request: pytest.FixtureRequest, default_render: Rendered, production_render: Rendered) -> Iterator[Rendered]:
    yield default_render if request.param == "default" else production_render


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Deployment, Job or CronJob."""
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod: dict[str, Any] = spec["template"]["spec"]
    return pod


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    labels: dict[str, str] = spec["template"]["metadata"]["labels"]
    return labels
