"""Terraform: formatted, parsed, and its modules' contracts hold (no provider download needed)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from core.topics import STREAM_TOPICS
from tests.deploy.conftest import REPO, TERRAFORM, Tools

# On a fresh machine the session fixture builds helm and the checkers venv first (minutes).
pytestmark = pytest.mark.timeout(1800)

ROOT_REQUIRED = {"image_repository", "public_hostname", "mlflow_tracking_uri"}
ROOT_SENSITIVE = {"database_url", "slack_webhook_url", "smtp_password"}
ROOT_OUTPUTS = {"api_url", "namespace", "release_name", "kafka_bootstrap", "topics", "eks_cluster_name"}
MODULES = ("vigil", "kafka-topics", "timescaledb", "aws-platform")


def _one(value: Any) -> Any:
    """python-hcl2 wraps attribute values in one-element lists."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


@pytest.fixture(scope="module")
def parsed(tools: Tools) -> dict[str, Any]:
    script = Path(__file__).with_name("tools") / "hcl_to_json.py"
    result = subprocess.run(
        [str(tools.python), str(script), str(TERRAFORM)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def _blocks(parsed: dict[str, Any], module_dir: str, kind: str) -> dict[str, dict[str, Any]]:
    """All `kind` blocks (variable, output, module, locals...) of one module directory, by name."""
    found: dict[str, dict[str, Any]] = {}
    for path, document in parsed.items():
        if str(Path(path).parent) != module_dir:
            continue
        for block in document.get(kind, []):
            for name, body in block.items():
                if name.startswith("__"):  # python-hcl2's line-number bookkeeping
                    continue
                assert name not in found, f"{kind} {name} defined twice in {module_dir}"
                found[name] = body
    return found


def test_terraform_is_formatted(tools: Tools) -> None:
    assert tools.terraform is not None, "no terraform or tofu: scripts/install-deploy-tools.sh could not provide one"
    result = subprocess.run(
        [str(tools.terraform), "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"run `terraform fmt -recursive terraform`:\n{result.stdout}"


def test_every_module_parses_and_declares_its_providers(parsed: dict[str, Any]) -> None:
    for module_dir in (".", *(f"modules/{m}" for m in MODULES)):
        files = {Path(p).name for p in parsed if str(Path(p).parent) == module_dir}
        assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf"} <= files, module_dir
        terraform = parsed[str(Path(module_dir) / "versions.tf")]["terraform"][0]
        assert _one(terraform["required_version"]).startswith(">="), module_dir
        assert _one(terraform["required_providers"]), module_dir


def test_root_variables_are_documented_with_the_right_ones_required(parsed: dict[str, Any]) -> None:
    variables = _blocks(parsed, ".", "variable")
    for name, body in variables.items():
        assert len(_one(body.get("description", "")).strip()) > 10, f"variable {name} has no description"
        assert "type" in body, f"variable {name} has no type"
    required = {name for name, body in variables.items() if "default" not in body}
    assert required == ROOT_REQUIRED
    sensitive = {name for name, body in variables.items() if _one(body.get("sensitive", False)) is True}
    assert sensitive == ROOT_SENSITIVE
    for name in sensitive:
        assert _one(variables[name]["default"]) == "", f"{name} must not carry a default secret"


def test_root_outputs_include_the_api_url(parsed: dict[str, Any]) -> None:
    outputs = _blocks(parsed, ".", "output")
    assert ROOT_OUTPUTS | {"database_secret_name"} == set(outputs)
    for name, body in outputs.items():
        assert len(_one(body["description"]).strip()) > 10, name
    assert _one(outputs["api_url"]["value"]) == "${module.vigil.api_url}"
    module_outputs = _blocks(parsed, "modules/vigil", "output")
    assert "api_url" in module_outputs


def test_module_calls_pass_every_required_input_and_only_known_ones(parsed: dict[str, Any]) -> None:
    calls = _blocks(parsed, ".", "module")
    assert {Path(_one(call["source"])).name for call in calls.values()} == set(MODULES)
    meta = {"source", "count", "for_each", "depends_on", "providers", "version"}
    for name, call in calls.items():
        module_dir = str(Path(_one(call["source"])).relative_to("."))
        assert (TERRAFORM / module_dir).is_dir(), module_dir
        variables = _blocks(parsed, module_dir, "variable")
        for variable, body in variables.items():
            assert len(_one(body.get("description", "")).strip()) > 5, f"{module_dir}: {variable} undocumented"
        passed = set(call) - meta - {"__start_line__", "__end_line__"}
        required = {v for v, body in variables.items() if "default" not in body}
        assert required <= passed, f"module {name} misses {sorted(required - passed)}"
        assert passed <= set(variables), f"module {name} passes unknown {sorted(passed - set(variables))}"


def test_outputs_of_modules_used_by_the_root_exist(parsed: dict[str, Any]) -> None:
    text = "\n".join((TERRAFORM / p).read_text() for p in ("main.tf", "outputs.tf", "providers.tf"))
    calls = _blocks(parsed, ".", "module")
    for module, output in set(re.findall(r"module\.(\w+)(?:\[0\])?\.(\w+)", text)):
        module_dir = str(Path(_one(calls[module]["source"])).relative_to("."))
        assert output in _blocks(parsed, module_dir, "output"), f"module.{module}.{output}"


def test_terraform_topics_match_core_topics(parsed: dict[str, Any]) -> None:
    locals_ = _blocks(parsed, ".", "locals")
    topics = _one(locals_["topics"])
    core = {spec.name: dict(spec.config) for spec in STREAM_TOPICS}
    assert {name: topic["config"] for name, topic in topics.items()} == core
    for spec in STREAM_TOPICS:
        if spec.partitions is not None:
            assert str(topics[spec.name]["partitions"]) == str(spec.partitions)


def test_committed_deployment_files_name_no_real_hosts() -> None:
    """House rule: no registry or host URLs in committed files (examples use .invalid or in-cluster names)."""
    files = [REPO / "Dockerfile", REPO / "docker-compose.yml", REPO / "docs" / "deploy.md"]
    files += [p for p in (REPO / "helm").rglob("*") if p.is_file()]
    files += [p for p in TERRAFORM.rglob("*") if p.is_file() and ".terraform" not in p.parts]
    # JSON Schema's `$schema` is an identifier, not a host anyone contacts.
    allowed = re.compile(
        r"^(localhost|127\.0\.0\.1|0\.0\.0\.0|[a-z0-9-]+|.*\.invalid|.*\.svc|.*\.local|json-schema\.org)(:\d+)?$"
    )
    for path in files:
        for host in re.findall(r"https?://([^/\s\"'`<>)]+)", path.read_text()):
            assert allowed.match(host), f"{path.relative_to(REPO)} names host {host}"
