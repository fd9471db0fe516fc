"""`vigil run detect-rules` and `vigil rules validate|backtest|seed|list`, plus the API's rules port.

This module is composition root: it injects the feature registry into the rules
catalogue and the offline feature engine into backtests, so `rules/` never
imports `features/`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from core.settings import Settings
from vigil.commands import settings_of as _settings

if TYPE_CHECKING:
    from api.ports import BacktestReport as ApiBacktestReport
    from api.ports import RuleIssue
    from core.contracts import FeatureVector
    from rules import BacktestReport, Catalogue, RuleDraft

_DATE_FORMATS = ("%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S")


def registry_catalogue() -> Catalogue:
    """The rules catalogue built from the live feature registry (flags are booleans)."""
    from features.registry import FEATURES
    from rules import Catalogue

    return Catalogue({name: "bool" if spec.unit == "flag" else "number" for name, spec in FEATURES.items()})


def offline_features() -> Any:
    """A stateful `FeatureSource` for backtests: the feature engine over history, in event-time order."""
    from core.contracts import FeatureVector
    from features.codec import features_dict
    from features.engine import Batch, FeatureEngine
    from features.registry import FEATURE_SET_VERSION

    engine = FeatureEngine()

    def add(vectors: Sequence[FeatureVector]) -> list[FeatureVector]:
        batch = Batch.empty()
        for vector in vectors:
            batch.append_transaction(vector.transaction)
        rows = engine.compute(batch)
        return [
            FeatureVector.model_construct(
                transaction=vector.transaction,
                features=features_dict(row),
                feature_set_version=FEATURE_SET_VERSION,
                late=False,
            )
            for vector, row in zip(vectors, rows, strict=True)
        ]

    return add


def _when(value: str, *, end: bool) -> datetime:
    for fmt in _DATE_FORMATS:
        try:
            parsed = datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        # A bare date as --to means "through that day".
        return parsed + timedelta(days=1) if end and fmt == "%Y-%m-%d" else parsed
    raise click.BadParameter(f"{value!r}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] (UTC)")


def _read_rule(path: Path) -> RuleDraft:
    """A rule file: YAML (one rule, or a pack with exactly one rule) or a plain-text expression."""
    from rules import RuleDraft, parse_pack

    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        drafts = parse_pack(text, origin=str(path))
        if len(drafts) != 1:
            raise click.UsageError(f"{path} holds {len(drafts)} rules; backtest one at a time")
        return drafts[0]
    return RuleDraft.model_validate({"id": "draft", "name": path.stem, "expression": text})


# --- vigil rules ------------------------------------------------------------------------


@click.group("rules")
def rules_group() -> None:
    """Analyst rules: validate, backtest over history, seed the default pack, list."""


@rules_group.command("validate")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--expression", "-e", help="Validate this expression instead of a file.")
def validate_command(file: Path | None, expression: str | None) -> None:
    """Check a rule file (pack YAML, one-rule YAML or plain expression) or an expression; exit 1 on errors."""
    from rules import PackError, parse_pack, validate

    if (file is None) == (expression is None):
        raise click.UsageError("give either FILE or --expression")
    if expression is not None:
        errors = validate(expression)
        for error in errors:
            click.echo(f"<expression>:{error}", err=True)
        if errors:
            sys.exit(1)
        click.echo("ok: the expression is a valid rule")
        return
    assert file is not None
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() not in (".yaml", ".yml"):
        errors = validate(text)
        for error in errors:
            click.echo(f"{file}:{error}", err=True)
        if errors:
            sys.exit(1)
        click.echo(f"ok: {file} is a valid rule")
        return
    try:
        drafts = parse_pack(text, origin=str(file))
    except PackError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(f"ok: {len(drafts)} valid rule(s) in {file}")


@rules_group.command("backtest")
@click.option("--rule", "rule_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from", "start", required=True, help="Start (UTC), YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS].")
@click.option("--to", "end", required=True, help="End (UTC, exclusive); a bare date includes that whole day.")
@click.option("--tenant", help="Only this tenant's transactions (default: the rule's scope, else all).")
@click.option("--warmup-days", default=30, show_default=True, type=click.IntRange(0, 365), help="Feature warm-up.")
@click.option("--no-features", is_flag=True, help="Skip the offline feature path (transaction fields only).")
@click.option("--examples", default=10, show_default=True, type=click.IntRange(0, 1000), help="Hits to show.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def backtest_command(
    ctx: click.Context,
    rule_file: Path,
    start: str,
    end: str,
    tenant: str | None,
    warmup_days: int,
    no_features: bool,
    examples: int,
    as_json: bool,
) -> None:
    """Evaluate a draft rule over stored history: hits, hit rate per day, precision/recall on labels."""
    from tqdm import tqdm

    from core.db import make_engine
    from rules import backtest_history, compile_expression, count_transactions

    begin, finish = _when(start, end=False), _when(end, end=True)
    if finish <= begin:
        raise click.BadParameter("--to must be after --from")
    draft = _read_rule(rule_file)
    tenant_id = tenant or draft.tenant_id
    catalogue = None if no_features else registry_catalogue()
    checked = compile_expression(draft.expression, catalogue=catalogue)
    engine = make_engine(_settings(ctx), pool_size=2)
    try:
        total = count_transactions(engine=engine, start=begin, end=finish, tenant_id=tenant_id)
        with tqdm(total=total, unit="tx", desc="backtest", file=sys.stderr, disable=as_json) as bar:

            def progress(count: int) -> None:
                bar.update(count)

            report = backtest_history(
                engine=engine,
                expression=draft.expression,
                start=begin,
                end=finish,
                tenant_id=tenant_id,
                catalogue=catalogue,
                features=None if no_features else offline_features(),
                warmup=timedelta(days=warmup_days),
                max_examples=examples,
                on_batch=progress,
            )
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps({"rule": draft.rule_id, "tenant_id": tenant_id, **report.to_dict()}, indent=2))
        return
    feature_fields = [spec.name for spec in checked.fields if spec.source == "feature"]
    _print_report(report, begin=begin, end=finish, tenant_id=tenant_id)
    if no_features and feature_fields:
        click.echo(f"note: --no-features: {', '.join(feature_fields)} are missing, so comparisons on them are unknown")


def _print_report(report: BacktestReport, *, begin: datetime, end: datetime, tenant_id: str | None) -> None:
    scope = f"tenant {tenant_id}" if tenant_id else "all tenants"
    click.echo(f"window      {begin:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC ({scope})")
    click.echo(f"evaluated   {report.evaluated:,} transactions")
    click.echo(f"hits        {report.hits:,} ({report.hit_rate:.3%})")
    for day in report.days:
        click.echo(f"  {day.day}  {day.hits:>8,} / {day.evaluated:>10,}  {day.hit_rate:8.3%}")
    if report.labelled:
        precision = "n/a" if report.precision is None else f"{report.precision:.3f}"
        recall = "n/a" if report.recall is None else f"{report.recall:.3f}"
        click.echo(
            f"labels      {report.labelled:,} labelled, {report.positives:,} fraud; "
            f"precision {precision} ({report.true_positives}/{report.labelled_hits} labelled hits), "
            f"recall {recall} ({report.true_positives}/{report.positives} fraud)"
        )
    else:
        click.echo("labels      none in this window: precision and recall unavailable")
    for example in report.examples:
        label = {True: "fraud", False: "not fraud", None: "unlabelled"}[example.label]
        click.echo(f"- {example.transaction_id} {example.occurred_at:%Y-%m-%d %H:%M:%S} [{label}]")
        click.echo(f"    {example.reasons[0]}")


@rules_group.command("seed")
@click.option("--pack", "pack_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Pack YAML.")
@click.option("--update", is_flag=True, help="Publish a new version where a seeded rule differs from the pack.")
@click.option("--force", is_flag=True, help="With --update, also overwrite rules someone changed since seeding.")
@click.option("--author", default="vigil-seed", show_default=True, help="Recorded as author and audit actor.")
@click.pass_context
def seed_command(ctx: click.Context, pack_file: Path | None, update: bool, force: bool, author: str) -> None:
    """Create the default (or given) pack's rules; safe to run again."""
    from core.db import make_engine
    from rules import DEFAULT_PACK, load_pack, seed_pack

    drafts = load_pack(pack_file or DEFAULT_PACK)
    engine = make_engine(_settings(ctx), pool_size=1)
    try:
        report = seed_pack(engine=engine, drafts=drafts, author=author, update=update, force=force)
    finally:
        engine.dispose()
    for label, ids in (
        ("created", report.created),
        ("updated", report.updated),
        ("unchanged", report.unchanged),
        ("kept (differs from the pack; --update to overwrite)", report.kept),
        ("kept (changed since seeding by someone else; --update --force to overwrite)", report.edited),
    ):
        if ids:
            click.echo(f"{label}: {', '.join(ids)}")


@rules_group.command("list")
@click.option("--tenant", help="Only rules that apply to this tenant.")
@click.option("--enabled-only", is_flag=True, help="Hide disabled rules.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_command(ctx: click.Context, tenant: str | None, enabled_only: bool, as_json: bool) -> None:
    """Rules with their current version."""
    from core.db import make_engine
    from rules import list_rules

    engine = make_engine(_settings(ctx), pool_size=1)
    try:
        views = list_rules(engine=engine, tenant_id=tenant, include_disabled=not enabled_only)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([view.model_dump(mode="json") for view in views], indent=2))
        return
    for view in views:
        state = "on " if view.enabled else "off"
        scope = view.tenant_id or "*"
        click.echo(
            f"{state} {view.rule_id:<40} v{view.current_version:<3} {view.severity.value:<8} {scope:<12} {view.name}"
        )


# --- vigil run detect-rules -------------------------------------------------------------


@click.command("detect-rules")
@click.option("--group", default="vigil-detect-rules", show_default=True, help="Kafka consumer group.")
@click.option("--poll-seconds", default=2.0, show_default=True, type=click.FloatRange(0.1, 300), help="Rule reload.")
@click.pass_context
def detect_rules(ctx: click.Context, group: str, poll_seconds: float) -> None:
    """Evaluate the active rules on tx.features; rule changes apply within seconds, no restart."""
    from core.logging import configure_logging

    settings = _settings(ctx)
    configure_logging(service="detect-rules", level=settings.log_level, fmt=settings.log_format)
    from core.kafka import StopFlag

    stop = StopFlag()
    stop.install()
    run_rules_service(settings=settings, group_id=group, poll_seconds=poll_seconds, stop=stop)


def run_rules_service(*, settings: Settings, group_id: str, stop: Any, poll_seconds: float = 2.0) -> None:
    """The rules detector: the shared detection loop fed by hot-reloaded rule detectors."""
    from core.db import make_engine
    from core.detection import run_detection_service
    from rules import LiveRuleDetectors, RuleEngine

    engine = make_engine(settings, pool_size=1)
    rules = RuleEngine(engine=engine, catalogue=registry_catalogue(), poll_seconds=poll_seconds)
    rules.refresh()  # fail at start, not on the first batch, when the database is unreachable
    detectors = LiveRuleDetectors(rules)

    def poll_while_idle() -> None:
        # Keep reloading while no traffic arrives, so the log shows a new rule version at once.
        rules.current()

    try:
        run_detection_service(
            settings=settings,
            service="detect-rules",
            group_id=group_id,
            detectors=detectors,
            stop=stop,
            on_idle=poll_while_idle,
        )
    finally:
        engine.dispose()


# --- the API's rules port -----------------------------------------------------------------


class RulesPort:
    """Adapts `rules` to `api.ports.RuleEngine` (validate and backtest for the API process)."""

    def __init__(self, *, settings: Settings, with_features: bool = True, warmup: timedelta = timedelta(days=30)):
        from core.db import make_engine

        self._engine = make_engine(settings, pool_size=2)
        self._with_features = with_features
        self._warmup = warmup
        self._catalogue = registry_catalogue() if with_features else None

    def validate(self, expression: str) -> list[RuleIssue]:
        from api.ports import RuleIssue
        from rules import validate

        return [
            RuleIssue(message=e.message, line=e.line, column=e.column, snippet=e.snippet)
            for e in validate(expression, catalogue=self._catalogue)
        ]

    def backtest(self, *, expression: str, tenant_id: str | None, start: datetime, end: datetime) -> ApiBacktestReport:
        from api.ports import BacktestReport as ApiReport
        from rules import backtest_history

        report = backtest_history(
            engine=self._engine,
            expression=expression,
            start=start,
            end=end,
            tenant_id=tenant_id,
            catalogue=self._catalogue,
            features=offline_features() if self._with_features else None,
            warmup=self._warmup,
        )
        return ApiReport(
            evaluated=report.evaluated,
            hits=report.hits,
            hits_per_day=report.hits_per_day,
            labelled_hits=report.labelled_hits,
            true_positives=report.true_positives,
            precision=report.precision,
            recall=report.recall,
            sample_transaction_ids=report.sample_transaction_ids,
        )

    def close(self) -> None:
        self._engine.dispose()


commands = [rules_group]
run_commands = [detect_rules]
