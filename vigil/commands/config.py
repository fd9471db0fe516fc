"""`vigil config show|docs`: the effective configuration and its reference table."""

from __future__ import annotations

import json

import click
from pydantic import SecretStr

from core.settings import ENV_PREFIX, Settings


def config_reference() -> str:
    """Markdown table of every `VIGIL_*` variable (README's Configuration section is generated from it)."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        # Lists and maps have a default_factory: show the value it builds, as the JSON the env var takes.
        default = field.get_default(call_default_factory=True)
        if isinstance(default, list | dict):
            shown = f"`{json.dumps(default, separators=(',', ':'))}`"
        elif isinstance(default, SecretStr):
            shown = "(development value; required in production)"
        elif default is None:
            shown = "unset"
        else:
            shown = f"`{default}`" if default != "" else '`""`'
        lines.append(f"| `{ENV_PREFIX}{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(lines)


@click.group("config")
def config() -> None:
    """Show the effective configuration or print its reference."""


@config.command("show")
@click.pass_context
def show(ctx: click.Context) -> None:
    """Print the effective settings as JSON (secrets masked)."""
    settings = ctx.find_object(Settings)
    assert settings is not None
    click.echo(json.dumps(settings.model_dump(mode="json"), indent=2, default=str))


@config.command("docs")
def docs() -> None:
    """Print the Markdown reference of every VIGIL_* variable."""
    click.echo(config_reference())


commands = [config]
