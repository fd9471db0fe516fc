"""The `vigil` command as a user meets it: help, bad configuration, the local stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from core.settings import Settings
from vigil.cli import cli

VIGIL = str(Path(sys.executable).with_name("vigil"))


def _walk(group: click.Group, prefix: list[str]) -> list[list[str]]:
    paths = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            paths.extend(_walk(command, [*prefix, name]))
        else:
            paths.append([*prefix, name])
    return paths


@pytest.mark.parametrize("path", _walk(cli, []), ids=lambda p: " ".join(p) or "vigil")
def test_every_command_explains_itself(path: list[str]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert command.help or command.short_help, f"`vigil {' '.join(path)}` has no help text"


def test_bad_configuration_is_one_clear_line() -> None:
    env = {**os.environ, "VIGIL_KAFKA_BOOTSTRAP": "notahost:abc"}
    result = subprocess.run([VIGIL, "stack", "status"], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "VIGIL_KAFKA_BOOTSTRAP" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_stack_status_reports_every_component_healthy(stack: Settings) -> None:
    result = subprocess.run([VIGIL, "stack", "status", "--json"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    components = {c["name"]: c for c in json.loads(result.stdout)}
    assert set(components) == {"postgres", "kafka", "mlflow"}
    assert all(c["healthy"] for c in components.values())


@pytest.mark.integration
def test_stack_up_twice_is_harmless(stack: Settings) -> None:
    before = subprocess.run([VIGIL, "stack", "status", "--json"], capture_output=True, text=True, check=True)
    result = subprocess.run([VIGIL, "stack", "up"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    after = subprocess.run([VIGIL, "stack", "status", "--json"], capture_output=True, text=True, check=True)
    # Same processes (pids in the detail) before and after: nothing was restarted or duplicated.
    assert json.loads(before.stdout) == json.loads(after.stdout)
