"""The ML commands end to end on the real database and MLflow: labels import, train from stored
transactions, promote/rollback/list, and `vigil evaluate` on generated data."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from core.schema import labels, transactions
from core.settings import Settings
from tests.ml.factories import Dataset
from vigil.cli import cli

pytestmark = pytest.mark.integration


def _env(settings: Settings) -> dict[str, str]:
    return {
        "VIGIL_DATABASE_URL": settings.database_url,
        "VIGIL_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "VIGIL_ML_EXPERIMENT": settings.ml_experiment,
        "VIGIL_ML_LABEL_DELAY_DAYS": "1",
        "VIGIL_ML_WARMUP_DAYS": "1",
        "VIGIL_LOG_LEVEL": "WARNING",
    }


def _store_transactions(db: Engine, dataset: Dataset, until: datetime) -> int:
    rows: list[dict[str, Any]] = []
    for record in dataset.records.values():
        occurred = datetime.fromisoformat(str(record["occurred_at"]).replace("Z", "+00:00"))
        if occurred >= until:
            continue
        rows.append(
            {
                **{k: record.get(k) for k in ("transaction_id", "tenant_id", "account_id", "card_id", "merchant_id")},
                **{k: record.get(k) for k in ("merchant_category", "currency", "channel", "country", "device_id")},
                "ip": record.get("ip"),
                "lat": record.get("lat"),
                "lon": record.get("lon"),
                "attributes": record.get("attributes") or {},
                "occurred_at": occurred,
                "amount": Decimal(str(record["amount"])),
            }
        )
    with db.begin() as connection:
        for start in range(0, len(rows), 2000):
            connection.execute(transactions.insert().values(rows[start : start + 2000]))
    return len(rows)


def _chargebacks(dataset: Dataset, path: Path) -> Path:
    """The generator's fraud labels as a chargeback file: each one reported 12 hours after the payment."""
    with dataset.labels.open(encoding="utf-8") as source, path.open("w", encoding="utf-8", newline="") as target:
        writer = csv.writer(target)
        writer.writerow(["transaction_id", "tenant_id", "typology", "reported_at"])
        for row in csv.DictReader(source):
            reported = datetime.fromisoformat(row["occurred_at"].replace("Z", "+00:00")) + timedelta(hours=12)
            writer.writerow([row["transaction_id"], row["tenant_id"], row["typology"], reported.isoformat()])
    return path


def test_labels_train_promote_rollback_list(
    ml_settings: Settings, dataset: Dataset, db: Engine, model_name: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    env = _env(ml_settings)
    stored = _store_transactions(db, dataset, until=dataset.start + timedelta(days=5))
    chargebacks = _chargebacks(dataset, tmp_path / "chargebacks.csv")
    args = ["labels", "import", str(chargebacks), "--label", "chargeback", "--map", "labelled_at=reported_at"]
    imported = runner.invoke(cli, args, env=env)
    assert imported.exit_code == 0, imported.output
    fraud_count = sum(1 for _ in csv.DictReader(dataset.labels.open(encoding="utf-8")))
    assert f"{fraud_count} labels: {fraud_count} new, 0 updated, 0 unchanged" in imported.output
    again = runner.invoke(cli, args, env=env)
    assert f"0 new, 0 updated, {fraud_count} unchanged" in again.output
    with db.connect() as connection:
        assert connection.execute(select(func.count()).select_from(labels)).scalar() == fraud_count

    train = ["train", "--model", model_name, "--from", "2026-09-02", "--to", "2026-09-05", "--json"]
    first = runner.invoke(cli, [*train, "--kind", "supervised"], env=env)
    assert first.exit_code == 0, first.output
    result = json.loads(first.output.strip().splitlines()[-1])
    assert (result["version"], result["created"], result["kind"]) == ("1", True, "supervised")
    counts = result["counts"]
    assert counts["train_positives"] > 0 and counts["rows"] < stored  # the window, not the warm-up day
    assert "average_precision" in result["metrics"] and "roc_auc" in result["metrics"]
    rerun = runner.invoke(cli, [*train, "--kind", "supervised"], env=env)
    assert json.loads(rerun.output.strip().splitlines()[-1])["created"] is False  # safe on a schedule

    promoted = runner.invoke(cli, ["models", "promote", "--model", model_name], env=env)
    assert promoted.exit_code == 0 and f"{model_name}@champion: none -> 1" in promoted.output
    later = ["train", "--model", model_name, "--from", "2026-09-02", "--to", "2026-09-06"]
    second = runner.invoke(cli, later, env=env)  # no --kind: the registered model's kind
    assert second.exit_code == 0, second.output
    assert "supervised:" in second.output and f"registered {model_name} version 2" in second.output
    assert runner.invoke(cli, ["models", "promote", "--model", model_name], env=env).output.strip().endswith("1 -> 2")
    rolled = runner.invoke(cli, ["models", "rollback", "--model", model_name], env=env)
    assert rolled.exit_code == 0 and "2 -> 1 (rolled back)" in rolled.output
    listed = runner.invoke(cli, ["models", "list", "--model", model_name, "--json"], env=env)
    (model,) = json.loads(listed.output)
    # Only our aliases: the shared MLflow also sees other suites (API fuzzing adds random aliases).
    assert {a: v for a, v in model["aliases"].items() if a in ("champion", "challenger")} == {
        "champion": "1",
        "challenger": "2",
    }
    assert [v["version"] for v in model["versions"]] == ["2", "1"]
    evaluated = runner.invoke(
        cli,
        [
            "evaluate",
            "--input",
            str(dataset.transactions),
            "--labels",
            str(dataset.labels),
            "--no-split",
            "--model",
            model_name,
            "--no-rules",
            "--no-statistical",
            "--output",
            str(tmp_path / "champion"),
        ],
        env=env,
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert f"ml:{model_name}@champion(v1)" in evaluated.stdout
    (row,) = [
        d for d in json.loads((tmp_path / "champion" / "report.json").read_text())["detectors"] if "@" in d["name"]
    ]
    assert row["rows"] == len(dataset.records) and row["average_precision"] > 0.5
    failed = runner.invoke(cli, ["models", "rollback", "--model", model_name], env=env)
    assert failed.exit_code == 2 and "no earlier version" in failed.output
    unknown = runner.invoke(cli, ["train", "--model", f"{model_name}-x", "--from", "2026-09-02", "--to", "2026-09-03"])
    assert unknown.exit_code != 0 and "give --kind" in unknown.output


def test_evaluate_prints_per_detector_quality_and_writes_the_report(
    ml_settings: Settings, dataset: Dataset, tmp_path: Path
) -> None:
    output = tmp_path / "report"
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--input",
            str(dataset.transactions),
            "--labels",
            str(dataset.labels),
            "--kind",
            "supervised",
            "--kind",
            "isolation_forest",
            "--kind",
            "ecod",
            "--label-delay-days",
            "1",
            "--output",
            str(output),
        ],
        env=_env(ml_settings),
    )
    assert result.exit_code == 0, result.output
    assert "ROC AUC" in result.stdout and "ml:supervised" in result.stdout and "combined (max)" in result.stdout
    report = json.loads((output / "report.json").read_text())
    assert report["train_until"] == "2026-09-05T00:00:00+00:00"  # the midnight nearest the middle of 8 days
    by_name = {d["name"]: d for d in report["detectors"]}
    assert {"ml:supervised", "ml:isolation_forest", "ml:ecod", "rules:any", "combined (max)"} <= set(by_name)
    assert any(name.startswith("statistical:") for name in by_name)
    supervised = by_name["ml:supervised"]["average_precision"]
    assert supervised > by_name["ml:isolation_forest"]["average_precision"]
    assert supervised > by_name["ml:ecod"]["average_precision"]
    assert set(by_name["ml:supervised"]["precision_at_k_per_day"]) == set(report["days"])
    assert (output / "pr_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_maps_the_columns_of_an_external_dataset(ml_settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "external.csv"
    rows = ["ref,ts,customer,shop,value"]
    rows += [
        f"r{i},2026-09-{1 + i // 200:02d}T{(i % 24):02d}:00:00Z,c{i % 40},s{i % 9},{10 + (i % 13)}" for i in range(800)
    ]
    rows += ["r-big,2026-09-04T12:00:00Z,c1,s1,9000"]
    source.write_text("\n".join(rows) + "\n")
    truth = tmp_path / "truth.csv"
    truth.write_text("ref,is_fraud\nr-big,1\nr5,0\n")
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--input",
            str(source),
            "--labels",
            str(truth),
            "--map",
            "transaction_id=ref",
            "--map",
            "occurred_at=ts",
            "--map",
            "account_id=customer",
            "--map",
            "merchant_id=shop",
            "--map",
            "amount=value",
            "--label-map",
            "transaction_id=ref",
            "--label-map",
            "label=is_fraud",
            "--kind",
            "ecod",
            "--no-rules",
            "--output",
            str(tmp_path / "out"),
        ],
        env=_env(ml_settings),
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["positives"] == 1
    ecod = next(d for d in report["detectors"] if d["name"] == "ml:ecod")
    assert ecod["roc_auc"] > 0.9  # 9000 among amounts of 10-22 stands out
