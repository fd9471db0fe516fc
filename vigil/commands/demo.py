"""`vigil run all` (every service in one terminal) and `vigil demo` (the whole product with live traffic)."""

from __future__ import annotations

import time
from typing import Final

import click

from core.settings import Settings
from vigil.commands import settings_of as _settings

# Stream services in pipeline order; the API last so its readiness means the rest is starting.
SERVICES: Final = ("ingest", "features", "detect-statistical", "detect-rules", "detect-ml", "alerting", "api")
JOBS: Final = {"aggregate-check": ["--every", "3600"]}


def _available(ctx: click.Context) -> list[str]:
    run = ctx.find_root().command
    assert isinstance(run, click.Group)
    group = run.commands["run"]
    assert isinstance(group, click.Group)
    return list(group.commands)


def _service_plan(ctx: click.Context) -> list[tuple[str, list[str]]]:
    from vigil.supervisor import vigil_argv

    available = set(_available(ctx))
    plan: list[tuple[str, list[str]]] = [(name, vigil_argv("run", name)) for name in SERVICES if name in available]
    plan += [(name, vigil_argv("run", name, *args)) for name, args in JOBS.items() if name in available]
    return plan


def _supervise(settings: Settings, plan: list[tuple[str, list[str]]], *, until: float | None = None) -> None:
    """Every service with its log file and the ops port the status page probes, on topics that exist."""
    from core.kafka import ensure_topics
    from core.topics import STREAM_TOPICS
    from vigil.supervisor import ops_ports, supervise

    # The features stage assigns every partition itself, so on a topic prefix nobody has created
    # yet it would exit and be restarted until something else created the topics.
    ensure_topics(settings, STREAM_TOPICS)
    supervise(
        plan,
        log_dir=settings.state_dir / "logs" / "services",
        child_env=ops_ports(settings.status_ops_targets),
        until=until,
    )


@click.command("all")
@click.pass_context
def run_all(ctx: click.Context) -> None:
    """Run every service as a child process; Ctrl-C or SIGTERM stops them all within 10 s."""
    from core.logging import configure_logging

    settings = _settings(ctx)
    configure_logging(service="supervisor", level=settings.log_level, fmt="text")
    plan = _service_plan(ctx)
    click.echo("starting: " + ", ".join(name for name, _ in plan))
    _supervise(settings, plan)


@click.command("demo")
@click.option("--rate", default=50, show_default=True, type=click.IntRange(1, 50_000), help="Live tx/s.")
@click.option(
    "--history-days",
    default=14,
    show_default=True,
    type=click.IntRange(0, 60),
    help="Days of back-dated traffic streamed first, so entities have history.",
)
@click.option("--accounts", default=2000, show_default=True, type=click.IntRange(10, 1_000_000))
@click.option("--merchants", default=200, show_default=True, type=click.IntRange(5, 100_000))
@click.option("--seed", default=1, show_default=True, type=int)
@click.pass_context
def demo(ctx: click.Context, rate: int, history_days: int, accounts: int, merchants: int, seed: int) -> None:
    """Seed demo users and rules, start every service, stream synthetic traffic, serve the dashboard."""
    import secrets

    from core.logging import configure_logging
    from vigil.demo import prepare_demo
    from vigil.supervisor import vigil_argv

    settings = _settings(ctx)
    configure_logging(service="demo", level=settings.log_level, fmt="text")
    credentials = prepare_demo(settings=settings)
    plan = _service_plan(ctx)
    available = set(_available(ctx))
    common = ["--accounts", str(accounts), "--merchants", str(merchants)]
    if "generate" in ctx.find_root().command.commands:  # type: ignore[attr-defined]
        if history_days:
            history = vigil_argv("demo-history", "--days", str(history_days), "--seed", str(seed), *common)
            plan.append(("history", history))
        # A fresh seed per run: a repeated seed repeats transaction ids, which ingestion dead-letters as duplicates.
        live_seed = secrets.randbelow(2**31)
        plan.append(
            (
                "generate-live",
                vigil_argv(
                    "generate",
                    *common,
                    *("--to", "kafka", "--seed", str(live_seed), "--rate", str(rate)),
                    *("--duration", "0", "--fraud-rate", "0.02"),
                ),
            )
        )
    click.echo(f"starting: {', '.join(name for name, _ in plan)}")
    missing = [name for name in SERVICES if name not in available]
    if missing:
        click.echo(f"not available in this build: {', '.join(missing)}")
    click.echo("")
    click.echo(f"  Dashboard: {settings.public_url}")
    for role, (user, password) in credentials.items():
        click.echo(f"  {role:<8} {user} / {password}")
    click.echo(f"  Logs:      {settings.state_dir / 'logs' / 'services'}/")
    click.echo("  Stop:      Ctrl-C")
    started = time.monotonic()
    _supervise(settings, plan)
    click.echo(f"demo stopped after {time.monotonic() - started:.0f}s")


@click.command("demo-history", hidden=True)
@click.option("--days", required=True, type=click.IntRange(1, 60))
@click.option("--accounts", required=True, type=click.IntRange(10, 1_000_000))
@click.option("--merchants", required=True, type=click.IntRange(5, 100_000))
@click.option("--seed", required=True, type=int)
@click.pass_context
def demo_history(ctx: click.Context, days: int, accounts: int, merchants: int, seed: int) -> None:
    """A step of `vigil demo`: back-dated traffic, then first models trained on it and promoted.

    Skips what an earlier demo already did: history already stored is not sent again (its
    ids would be dead-lettered as duplicates), and a model with a champion is left alone.
    """
    import subprocess
    from datetime import UTC, datetime, timedelta

    from core.logging import configure_logging
    from vigil.demo import has_champion, history_rows, wait_until_stored
    from vigil.supervisor import vigil_argv

    settings = _settings(ctx)
    configure_logging(service="demo-history", level=settings.log_level, fmt="text")
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(days=days)
    labels = settings.state_dir / "demo-history-labels.csv"
    stored = history_rows(settings=settings, start=start, end=end)
    if stored:
        click.echo(f"history: {stored} transactions already stored; not sending them again")
    else:
        per_day = max(accounts * 2, 2000)
        generate = vigil_argv(
            "generate",
            *("--accounts", str(accounts), "--merchants", str(merchants), "--to", "kafka"),
            *("--seed", str(seed), "--start", start.strftime("%Y-%m-%dT%H:%M:%SZ")),
            *("--rate", str(per_day * days // 60 or 1), "--duration", "60", "--fraud-rate", "0.01"),
            *("--event-rate", str(per_day / 86_400), "--labels", str(labels)),
        )
        subprocess.run(generate, check=True)
    stored = wait_until_stored(settings=settings, start=start, end=end)
    click.echo(f"history: {stored} transactions stored")
    # Known outcomes of the back-dated traffic stand in for the chargebacks a real team would train on.
    unsupervised = ["--kind", "isolation_forest"]
    supervised = ["--kind", "supervised", "--labels", str(labels), "--label-delay-days", "0"]
    models = {"vigil-unsupervised": (unsupervised, False), "vigil-supervised": (supervised, True)}
    window = ["--from", start.strftime("%Y-%m-%dT%H:%M"), "--to", end.strftime("%Y-%m-%dT%H:%M")]
    for name, (options, needs_labels) in models.items():
        if has_champion(settings=settings, name=name):
            click.echo(f"{name}: champion already serving; not retrained")
            continue
        if needs_labels and not labels.exists():
            click.echo(f"{name}: no labels for the stored history ({labels}); it waits for analysts' labels")
            continue
        subprocess.run(vigil_argv("train", "--model", name, *options, *window), check=True)
        subprocess.run(vigil_argv("models", "promote", "--model", name), check=True)


run_commands = [run_all]
commands = [demo, demo_history]
