"""CLI commands contributed per area; `vigil.cli` attaches them.

Each module listed here exposes `commands: list[click.Command]` (top level,
e.g. `vigil generate`) and/or `run_commands: list[click.Command]` (under
`vigil run`). Keep heavy imports inside the command functions.
"""

from __future__ import annotations

import importlib
from typing import Final

import click

from core.settings import Settings

COMMAND_MODULES: Final[tuple[str, ...]] = (
    "vigil.commands.alerting",
    "vigil.commands.api",
    "vigil.commands.config",
    "vigil.commands.demo",
    "vigil.commands.detectors",
    "vigil.commands.features",
    "vigil.commands.ingestion",
    "vigil.commands.ml",
    "vigil.commands.rules",
)


def settings_of(ctx: click.Context) -> Settings:
    """The settings the root command loaded (every command reads them from here)."""
    settings = ctx.find_object(Settings)
    if settings is None:
        raise click.UsageError("settings were not loaded")
    return settings


def attach(*, root: click.Group, run: click.Group) -> None:
    """Register every area's commands on the root group and on `vigil run`."""
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        for command in getattr(module, "commands", []):
            root.add_command(command)
        for command in getattr(module, "run_commands", []):
            run.add_command(command)
