"""`vigil run alerting`, `vigil silences add|list|expire` and `vigil alerting check-config`."""

from __future__ import annotations

import getpass
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from vigil.commands import settings_of as _settings


def _when(value: str | None, *, default: datetime) -> datetime:
    if value is None:
        return default
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise click.BadParameter(f"{value!r} needs a UTC offset (e.g. 2026-11-23T10:00:00+00:00)")
    return parsed


@click.command("alerting")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Routes/receivers file (default: VIGIL_ALERTING_CONFIG_FILE, else built-in defaults).",
)
@click.pass_context
def run_alerting_command(ctx: click.Context, config_file: Path | None) -> None:
    """Consume anomalies; group, silence, inhibit and notify Slack, email and webhooks."""
    from alerting import load_config, run_alerting
    from core.kafka import StopFlag
    from core.logging import configure_logging

    settings = _settings(ctx)
    configure_logging(service="alerting", level=settings.log_level, fmt=settings.log_format)
    config = load_config(config_file or settings.alerting_config_file)
    stop = StopFlag()
    stop.install()
    run_alerting(settings=settings, config=config, stop=stop)


@click.group("silences")
def silences() -> None:
    """Mute matching alerts for a while (Alertmanager matchers; every change is audited)."""


@silences.command("add")
@click.argument("matchers", nargs=-1, required=True)
@click.option("--comment", required=True, help="Why (shown to whoever wonders where the alerts went).")
@click.option("--author", default=None, help="Who (default: the current user).")
@click.option("--duration", default="2h", show_default=True, help="Length, e.g. 30m, 2h, 1d.")
@click.option("--starts-at", default=None, help="ISO 8601 start with offset (default: now).")
@click.option("--ends-at", default=None, help="ISO 8601 end with offset (overrides --duration).")
@click.option("--tenant", default=None, help="Only this tenant's alerts (default: every tenant).")
@click.pass_context
def silences_add(
    ctx: click.Context,
    matchers: tuple[str, ...],
    comment: str,
    author: str | None,
    duration: str,
    starts_at: str | None,
    ends_at: str | None,
    tenant: str | None,
) -> None:
    """Create a silence, e.g. `vigil silences add entity_id=m-1 'severity=~"warning|info"' --comment ...`."""
    from alerting import create_silence
    from alerting.config import parse_duration
    from core.db import make_engine

    now = datetime.now(UTC)
    start = _when(starts_at, default=now)
    try:
        length = parse_duration(duration)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--duration") from None
    end = _when(ends_at, default=start + length)
    engine = make_engine(_settings(ctx), pool_size=1)
    try:
        silence = create_silence(
            engine=engine,
            matchers=list(matchers),
            starts_at=start,
            ends_at=end,
            created_by=author or getpass.getuser(),
            comment=comment,
            now=now,
            tenant_id=tenant,
        )
    finally:
        engine.dispose()
    click.echo(str(silence.silence_id))


@silences.command("list")
@click.option("--tenant", default=None, help="This tenant's silences (and global ones).")
@click.option("--all", "include_ended", is_flag=True, help="Include expired and ended silences.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def silences_list(ctx: click.Context, tenant: str | None, include_ended: bool, as_json: bool) -> None:
    """List active and upcoming silences."""
    from alerting import list_silences
    from core.db import make_engine

    engine = make_engine(_settings(ctx), pool_size=1)
    try:
        found = list_silences(engine=engine, now=datetime.now(UTC), tenant_id=tenant, include_ended=include_ended)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([s.model_dump(mode="json") for s in found]))
        return
    if not found:
        click.echo("no silences")
        return
    for s in found:
        state = "expired" if s.expired_at else f"until {s.ends_at:%Y-%m-%d %H:%M}Z"
        matchers = " ".join(str(m) for m in s.matchers)
        click.echo(f"{s.silence_id}  {state:<22} {s.tenant_id or '*':<12} {matchers}  by {s.created_by}: {s.comment}")


@silences.command("expire")
@click.argument("silence_id", type=click.UUID)
@click.option("--author", default=None, help="Who (default: the current user).")
@click.pass_context
def silences_expire(ctx: click.Context, silence_id: uuid.UUID, author: str | None) -> None:
    """End a silence now; the alerts it muted come back if they are still active."""
    from alerting import expire_silence
    from core.db import make_engine

    engine = make_engine(_settings(ctx), pool_size=1)
    try:
        silence = expire_silence(
            engine=engine, silence_id=silence_id, expired_by=author or getpass.getuser(), now=datetime.now(UTC)
        )
    finally:
        engine.dispose()
    click.echo(f"expired {silence.silence_id}")


@click.group("alerting")
def alerting_group() -> None:
    """Inspect the alerting configuration."""


@alerting_group.command("check-config")
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def check_config(ctx: click.Context, path: Path | None) -> None:
    """Validate a routes/receivers file and print its routes (secrets are never printed)."""
    from alerting import load_config

    config = load_config(path or _settings(ctx).alerting_config_file)
    for route in config.routes:
        timing = route.timing(config.defaults)
        matchers = " ".join(str(m) for m in route.matchers) or "(everything)"
        row: dict[str, Any] = {
            "route": route.id,
            "match": matchers,
            "receiver": route.receiver or "(none)",
            "group_by": ",".join(timing.group_by),
            "wait": f"{timing.group_wait.total_seconds():g}s",
            "interval": f"{timing.group_interval.total_seconds():g}s",
            "repeat": f"{timing.repeat_interval.total_seconds():g}s",
        }
        click.echo("  ".join(f"{k}={v}" for k, v in row.items()))
    for name, why in sorted(config.unconfigured_receivers.items()):
        click.echo(f"receiver {name}: {why}")


commands = [silences, alerting_group]
run_commands = [run_alerting_command]
