"""Backtests: over in-memory batches (unit) and over stored history with labels and features (integration)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert

from core.contracts import FeatureVector
from core.schema import labels, transactions
from core.settings import Settings
from rules import RuleSyntaxError, backtest, backtest_history
from tests.rules.factories import T0, vector
from vigil.cli import cli
from vigil.commands.rules import offline_features, registry_catalogue

DAY1, DAY2 = T0, T0 + timedelta(days=1)


def history() -> list[FeatureVector]:
    rows = [vector(i, amount=f"{10 * (i + 1)}.00", occurred=DAY1 + timedelta(minutes=i)) for i in range(10)]
    rows += [vector(100 + i, amount="500.00", occurred=DAY2 + timedelta(minutes=i), tenant="other") for i in range(4)]
    return rows


def test_hits_per_day_and_precision_recall_against_labels() -> None:
    rows = history()
    labels = {("acme", "tx-8"): True, ("acme", "tx-9"): False, ("acme", "tx-2"): True}
    labels |= {("other", "tx-100"): True, ("other", "tx-101"): False, ("acme", "tx-100"): False}
    report = backtest(expression="amount >= 90", batches=[rows[:6], rows[6:]], labels=labels)
    assert (report.evaluated, report.hits) == (14, 6)  # tx-8, tx-9 and the four 500s
    assert [(d.day.isoformat(), d.evaluated, d.hits) for d in report.days] == [
        (DAY1.date().isoformat(), 10, 2),
        (DAY2.date().isoformat(), 4, 4),
    ]
    assert report.hits_per_day == {DAY1.date().isoformat(): 2, DAY2.date().isoformat(): 4}
    assert (report.labelled, report.positives, report.labelled_hits) == (5, 3, 4)
    assert (report.true_positives, report.false_positives, report.false_negatives) == (2, 2, 1)
    assert report.precision == 0.5 and report.recall == pytest.approx(2 / 3)
    assert report.sample_transaction_ids[:2] == ["tx-8", "tx-9"]
    assert report.examples[0].reasons[0] == "Rule 'draft rule' (version 0) matched: amount = 90."
    assert json.loads(json.dumps(report.to_dict()))["hits"] == 6


def test_tenant_scope_counts_only_that_tenant_and_no_labels_means_no_precision() -> None:
    report = backtest(expression="amount >= 90", batches=[history()], tenant_id="other")
    assert (report.evaluated, report.hits) == (4, 4)
    assert report.precision is None and report.recall is None


def test_invalid_rule_fails_before_history_is_read() -> None:
    def batches() -> Iterator[list[FeatureVector]]:
        raise AssertionError("history must not be read for an invalid rule")
        yield []

    with pytest.raises(RuleSyntaxError):
        backtest(expression="amount >", batches=batches())


# --- stored history (integration) ------------------------------------------------------------


def _store(db: Engine, vectors: list[FeatureVector], verdicts: dict[str, str]) -> None:
    rows = []
    for v in vectors:
        row = v.transaction.model_dump(mode="python", exclude={"schema_version", "ingested_at"})
        row["channel"] = v.transaction.channel.value
        row["ip"] = None
        rows.append(row)
    with db.begin() as connection:
        connection.execute(insert(transactions), rows)
        if verdicts:
            connection.execute(
                insert(labels),
                [
                    {"tenant_id": "acme", "transaction_id": tx, "label": label, "source": "analyst", "author": "ana"}
                    for tx, label in verdicts.items()
                ],
            )


def _burst_history() -> list[FeatureVector]:
    start = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0) - timedelta(days=3)
    rows = [
        vector(
            i,
            transaction_id=f"old-{i}",
            amount="40.00",
            card="card-1",
            account="acc-1",
            occurred=start - timedelta(days=2, hours=i),
        )
        for i in range(6)
    ]  # warm-up history, before the window
    rows += [
        vector(
            i,
            transaction_id=f"ct-{i}",
            amount="1.00",
            card="card-9",
            account="acc-9",
            occurred=start + timedelta(minutes=i),
        )
        for i in range(7)
    ]
    rows += [
        vector(
            i,
            transaction_id=f"ok-{i}",
            amount="35.00",
            card="card-1",
            account="acc-1",
            occurred=start + timedelta(hours=5 + i),
        )
        for i in range(3)
    ]
    return rows


@pytest.mark.integration
def test_backtest_over_stored_transactions_with_offline_features_and_labels(db: Engine) -> None:
    rows = _burst_history()
    _store(db, rows, {"ct-5": "fraud", "ct-6": "fraud", "ct-1": "fraud", "ok-0": "expected"})
    start, end = rows[6].transaction.occurred_at, rows[-1].transaction.occurred_at + timedelta(seconds=1)
    report = backtest_history(
        engine=db,
        expression="card_count_1h >= 5 and amount < 10",
        start=start,
        end=end,
        catalogue=registry_catalogue(),
        features=offline_features(),
        warmup=timedelta(days=5),
    )
    assert report.evaluated == 10  # the warm-up rows are featurised but not judged
    assert report.sample_transaction_ids == ["ct-4", "ct-5", "ct-6"]
    assert (report.true_positives, report.positives, report.labelled_hits) == (2, 3, 2)
    assert report.precision == 1.0 and report.recall == pytest.approx(2 / 3)

    without_features = backtest_history(engine=db, expression="card_count_1h >= 5", start=start, end=end)
    assert (without_features.evaluated, without_features.hits) == (10, 0)  # features missing -> unknown


@pytest.mark.integration
def test_cli_validate_seed_list_and_backtest(db: Engine, settings: Settings, tmp_path: Path) -> None:
    env = {"VIGIL_DATABASE_URL": settings.database_url, "VIGIL_LOG_FORMAT": "text"}
    runner = CliRunner()

    bad = runner.invoke(cli, ["rules", "validate", "-e", "amount > 1 and countyr == 'DE'"], env=env)
    assert bad.exit_code == 1 and "line 1, column 16: unknown field 'countyr'; did you mean 'country'?" in bad.output
    assert runner.invoke(cli, ["rules", "validate", "rules/packs/default.yaml"], env=env).exit_code == 0

    seeded = runner.invoke(cli, ["rules", "seed"], env=env)
    assert seeded.exit_code == 0 and "created: card-testing-burst" in seeded.output
    again = runner.invoke(cli, ["rules", "seed"], env=env)
    assert again.exit_code == 0 and "created" not in again.output and "unchanged" in again.output
    listed = runner.invoke(cli, ["rules", "list", "--json"], env=env)
    assert "card-testing-burst" in {r["rule_id"] for r in json.loads(listed.output)}

    rows = _burst_history()
    _store(db, rows, {"ct-5": "fraud"})
    rule = tmp_path / "burst.yaml"
    rule.write_text("id: burst\nname: Burst\nexpression: card_count_1h >= 5 and amount < 10\n")
    day = rows[6].transaction.occurred_at.date().isoformat()
    result = runner.invoke(
        cli, ["rules", "backtest", "--rule", str(rule), "--from", day, "--to", day, "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["evaluated"], report["hits"], report["true_positives"]) == (10, 3, 1)
    text = runner.invoke(cli, ["rules", "backtest", "--rule", str(rule), "--from", day, "--to", day], env=env)
    assert text.exit_code == 0 and "hits        3 (30.000%)" in text.output and "precision 1.000" in text.output


@pytest.mark.integration
def test_api_rules_port_validates_and_backtests(db: Engine, settings: Settings) -> None:
    from api.ports import RuleEngine as RulesPortProtocol
    from vigil.commands.rules import RulesPort

    rows = _burst_history()
    _store(db, rows, {"ct-5": "fraud"})
    adapter = RulesPort(settings=settings)
    port: RulesPortProtocol = adapter  # mypy checks the adapter against the API's Protocol
    try:
        issues = port.validate("card_count_1h >= 5 and amout < 10")
        assert [(i.line, i.column) for i in issues] == [(1, 24)] and "did you mean 'amount'" in issues[0].message
        start = rows[6].transaction.occurred_at
        report = port.backtest(
            expression="card_count_1h >= 5 and amount < 10",
            tenant_id="acme",
            start=start,
            end=start + timedelta(days=1),
        )
    finally:
        adapter.close()
    assert (report.evaluated, report.hits, report.true_positives) == (10, 3, 1)
    assert report.hits_per_day == {start.date().isoformat(): 3}
    assert report.sample_transaction_ids == ["ct-4", "ct-5", "ct-6"]
