"""End to end: `vigil generate --seed 1` -> ingest -> features -> detect-statistical + detect-rules -> anomalies.

The real commands run as subprocesses on the test's topics and database, with the
default rule pack that `vigil demo` seeds. The generator's labels are joined with
the anomalies table to measure recall on the high-amount and card-testing
typologies and the false-positive rate on legitimate traffic; the figures are
printed (`pytest -s`) and logged.

Thresholds, from measurements on this seed (docs/detectors.md). The traffic starts on the Monday of
the week 20 days ago, so every run within a week streams the same transactions and gives the same
figures (three runs on 2026-11-23: identical); from week to week the accounts' histories differ.
They guard against regressions, they do not praise:
- high amount: each is 20-60x the account's typical amount (>= 7.7x its median on this
  seed), so nearly every one judged (>= 10 past payments) must be flagged: measured all in
  eight runs, 18/19 and 17/18 in two of the start times that moved with the clock (guard 0.9: one
  miss of ~19); overall recall is bounded by the accounts too new to judge, which the merchant
  z-score partly covers, so it depends on the week's traffic: 27/33 to 30/33 (0.818-0.909) over ten
  start times, 28/33 on the pinned start of 2026-11-23 (guard 0.8);
- card testing: the default pack's rule fires from the 5th tiny payment of a burst, or from
  the 3rd when every payment on the card in the hour was under 10 (in the card's currency,
  so bursts in yen, rupees or naira are missed): measured 0.695-0.799 in the pipeline (the
  "every payment" part varies between runs; offline replays give 0.799), 0.65 with the
  5-payment rule alone; guard 0.65, the 5-payment rule's floor;
- false positives: legitimate spending is heavy-tailed (lognormal habits times category
  multipliers), so the robust detectors work on log amounts; the mean/σ z-score warns at the
  issue's 2.5σ and is critical at 7σ (docs/detectors.md). Measured 4.2-4.3 % at warning or above,
  0.5-0.7 % critical, 2.2 % for the account z-score alone (two runs) (was 17 %, 10 %, 3.2 % before calibration;
  with a 3.5σ warning band 2.5-2.7 %, 0.6-0.7 %, 1.1-1.2 % in five runs). Guards: 5 % and 1 %
  (the critical queue analysts work first), and 3 % for the z-score alone.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from core.contracts import FeatureVector
from core.settings import Settings
from detectors.config import MIN_HISTORY_DEFAULT
from rules import load_pack, seed_pack
from tests.detectors.pipeline import caught_up, ends_of, feature_vectors
from tests.waiting import wait_for
from tests.web.pipeline import Pipeline

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]
log = logging.getLogger(__name__)

ACCOUNTS = 300
MERCHANTS = 60
TRANSACTIONS = 12_000
DAYS = 20.0  # of event time: ~40 past payments per account, enough history for most
FRAUD_RATE = 0.05
QUARTILES = ("account_amount_history_q1", "account_amount_history_q3")
HELD_BACK = 20  # vectors the features stage may still hold at the end of a finite stream
MIN_HISTORY = MIN_HISTORY_DEFAULT  # what the detectors judge

HIGH_AMOUNT_RECALL_JUDGED = 0.9
HIGH_AMOUNT_RECALL = 0.8
CARD_TESTING_RECALL = 0.7  # 0.835 in session 6 runs (one unexplained run at 0.695 before in_usd)
FALSE_POSITIVE_RATE = 0.05
FALSE_POSITIVE_RATE_CRITICAL = 0.01
FALSE_POSITIVE_RATE_ZSCORE = 0.03


def _labels(path: Path) -> dict[str, str]:
    with path.open() as handle:
        return {row["transaction_id"]: row["typology"] for row in csv.DictReader(handle) if row["label"] == "fraud"}


def _week_start(moment: datetime) -> datetime:
    """Monday 00:00 UTC of the moment's week: the same traffic in every run of a week.

    The generator lays its daily and weekly rhythms on the start time, so a start that moved
    with the clock gave accounts different histories from run to run (one high-amount payment's
    account: 88 past payments in one run, 74 in another).
    """
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def _rate(hits: int, total: int) -> float:
    return hits / total if total else float("nan")


def test_statistical_and_rule_detectors_catch_injected_fraud(topics: Settings, db: Engine, tmp_path: Path) -> None:
    settings = topics
    pipeline = Pipeline(settings=settings, log_dir=tmp_path)
    # The pack `vigil demo` seeds (prepare_demo -> seed_pack(load_pack())), before detect-rules loads its rules.
    seed_pack(engine=db, drafts=load_pack())
    labels_path = tmp_path / "labels.csv"
    start = _week_start(datetime.now(UTC) - timedelta(days=DAYS)).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        # Services first: they start while the generator sends (start-up dominates on a busy machine).
        pipeline.start("ingest", ["run", "ingest", "--instance-id", f"{settings.kafka_topic_prefix}recall"])
        pipeline.start("features", ["run", "features"])
        pipeline.start("detect-statistical", ["run", "detect-statistical"])
        pipeline.start("detect-rules", ["run", "detect-rules", "--poll-seconds", "1"])
        pipeline.run(
            "generate", "--to", "kafka", "--seed", "1", "--accounts", str(ACCOUNTS), "--merchants", str(MERCHANTS),
            "--start", start, "--rate", str(TRANSACTIONS / 4), "--duration", "4",
            "--event-rate", str(TRANSACTIONS / (DAYS * 86_400)), "--fraud-rate", str(FRAUD_RATE),
            "--labels", str(labels_path),
            timeout=180,
        )  # fmt: skip
        fraud = _labels(labels_path)

        def transactions() -> int:
            pipeline.assert_alive()
            with db.connect() as connection:
                return int(connection.execute(text("SELECT count(*) FROM transactions")).scalar_one())

        wait_for(lambda: transactions() >= TRANSACTIONS, timeout=240, what="ingestion of the generated traffic")
        vectors: dict[tuple[int, int], FeatureVector] = {}
        seen: list[int] = []

        def featurised() -> bool:
            # The features stage may hold back the stream's last few events (they wait for newer event time):
            # done when every transaction has a vector, or the count has settled within HELD_BACK of it.
            pipeline.assert_alive()
            vectors.update(feature_vectors(settings))
            seen.append(len(vectors))
            settled = len(seen) >= 4 and len(set(seen[-4:])) == 1 and len(vectors) >= TRANSACTIONS - HELD_BACK
            return len(vectors) >= TRANSACTIONS or settled

        wait_for(featurised, timeout=240, what="a feature vector per transaction", every=2)
        ends = ends_of(list(vectors))
        for group in ("vigil-detect-statistical", "vigil-detect-rules"):
            # The default groups are prefixed like every other service's: this test's prefix, no one else's offsets.
            full = f"{settings.kafka_topic_prefix}{group}"

            def done(full: str = full) -> bool:
                pipeline.assert_alive()
                return caught_up(settings, group=full, ends=ends)

            wait_for(done, timeout=240, what=f"{group} to commit every vector")
    finally:
        pipeline.stop()

    history = {
        v.transaction.transaction_id: v.features.get("account_amount_history_count") or 0.0 for v in vectors.values()
    }
    assert len(history) == len(vectors), "one vector per transaction"
    fraud = {tx: kind for tx, kind in fraud.items() if tx in history}  # judged: those featurised
    with db.connect() as connection:
        rows = connection.execute(
            text("SELECT transaction_id, detector_family, detector_name, severity, reasons FROM anomalies")
        ).all()
    flagged: dict[str, set[str]] = defaultdict(set)
    critical: set[str] = set()
    for transaction_id, family, name, severity, reasons in rows:
        assert family in ("statistical", "rules"), family
        assert reasons and all(r["text"].endswith(".") and len(r["text"].split()) >= 6 for r in reasons), reasons
        if severity in ("warning", "critical"):
            flagged[transaction_id].add(name)
        if severity == "critical":
            critical.add(transaction_id)

    figures: dict[str, float] = {"transactions": TRANSACTIONS, "feature vectors (judged)": len(vectors)}
    for typology in ("high_amount", "card_testing"):
        ids = [tx for tx, kind in fraud.items() if kind == typology]
        assert len(ids) >= 20, f"too few {typology} payments generated to measure recall: {len(ids)}"
        figures[f"{typology} payments"] = len(ids)
        figures[f"{typology} recall"] = _rate(sum(tx in flagged for tx in ids), len(ids))
        judged = [tx for tx in ids if history[tx] >= MIN_HISTORY]
        figures[f"{typology} recall, >= {MIN_HISTORY} past payments"] = _rate(
            sum(tx in flagged for tx in judged), len(judged)
        )
    legitimate = [tx for tx in history if tx not in fraud]
    figures["legitimate payments"] = len(legitimate)
    figures["false-positive rate"] = _rate(sum(tx in flagged for tx in legitimate), len(legitimate))
    figures["false-positive rate, critical"] = _rate(sum(tx in critical for tx in legitimate), len(legitimate))
    flagged_fraud = sum(tx in flagged for tx in fraud)
    figures["precision (all typologies), warning or above"] = _rate(
        flagged_fraud, flagged_fraud + sum(tx in flagged for tx in legitimate)
    )
    critical_fraud = sum(tx in critical for tx in fraud)
    figures["precision (all typologies), critical"] = _rate(
        critical_fraud, critical_fraud + sum(tx in critical for tx in legitimate)
    )
    figures["false-positive rate, z-score alone"] = _rate(
        sum("account_amount_zscore" in flagged.get(tx, ()) for tx in legitimate), len(legitimate)
    )
    # The IQR detector reads exactly the features stage's quartile names; without them it judges nothing.
    quartiles = all(name in v.features for v in vectors.values() for name in QUARTILES)
    iqr_rows = sum(1 for _, _, name, _, _ in rows if name == "account_amount_iqr")
    figures["IQR anomalies"] = iqr_rows
    assert (iqr_rows > 0) == quartiles, f"quartile features present: {quartiles}, IQR anomalies: {iqr_rows}"
    by_detector: dict[str, int] = defaultdict(int)
    for tx in legitimate:
        for name in flagged.get(tx, ()):
            by_detector[name] += 1
    report = "\n".join(
        [f"  {name:<44} {value:,.3f}" if value < 1 or value != int(value) else f"  {name:<44} {value:,.0f}"
         for name, value in figures.items()]
        + [f"  false positives by {name:<32} {count:,}" for name, count in sorted(by_detector.items())]
    )  # fmt: skip
    example = next(iter(rows))[4][0]["text"] if rows else ""
    print(f"\npipeline recall on `vigil generate --seed 1`:\n{report}\n  example reason: {example}")
    log.info("pipeline recall on `vigil generate --seed 1`:\n%s", report)

    assert figures[f"high_amount recall, >= {MIN_HISTORY} past payments"] >= HIGH_AMOUNT_RECALL_JUDGED, report
    assert figures["high_amount recall"] >= HIGH_AMOUNT_RECALL, report
    assert figures["card_testing recall"] >= CARD_TESTING_RECALL, report
    assert figures["false-positive rate"] <= FALSE_POSITIVE_RATE, report
    assert figures["false-positive rate, critical"] <= FALSE_POSITIVE_RATE_CRITICAL, report
    assert figures["false-positive rate, z-score alone"] <= FALSE_POSITIVE_RATE_ZSCORE, report
