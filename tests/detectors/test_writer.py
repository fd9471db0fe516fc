"""The anomaly writer's fast path (rows from detector columns) against the model path, replays, and wiring."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import orjson
import psycopg
import pytest
from sqlalchemy import Engine, text

from core import metrics
from core.contracts import Anomaly, DetectorFamily, Reason, anomaly_id_for, anomaly_ids
from core.detection import (
    AnomalyRecords,
    AnomalyRow,
    AnomalyWriter,
    DetectionError,
    DetectionHandler,
    Detections,
    FeatureBatch,
    Scores,
    Thresholds,
    anomaly_message,
    anomaly_messages,
    anomaly_records,
    detect_batch,
    prefixed_group,
    split_records,
)
from core.kafka import DeliveringProducer, read_all
from core.settings import Settings, load_settings
from core.topics import ANOMALIES
from detectors import statistical_detectors
from tests.detectors.factories import labelled_batch

SETTINGS = load_settings(environment="test")
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def _detections(size: int = 400, seed: int = 3) -> Detections:
    vectors, _ = labelled_batch(seed=seed, size=size, outlier_share=0.2)
    return detect_batch(
        detectors=statistical_detectors(settings=SETTINGS),
        batch=FeatureBatch(vectors),
        thresholds=Thresholds(),
        now=NOW,
    )


def test_rows_and_messages_match_the_validated_models() -> None:
    detections = _detections()
    models = detections.anomalies()
    assert len(models) == len(detections) > 20
    records, expected = detections.records(), anomaly_records(models)
    assert list(records.rows) == list(expected.rows), "the fast path must store what the models hold"
    assert sorted(records.snapshots) == sorted(expected.snapshots), "one snapshot per flagged transaction"
    transactions = {a.transaction_id for a in models}
    assert len(records.snapshots) == len(transactions) < len(models), "snapshots are per transaction, not per row"
    features = {s[1]: s[3] for s in records.snapshots}
    for model, row in zip(models, records.rows, strict=True):
        assert Anomaly.model_validate_json(anomaly_message(row, features[row[4]])) == model
    # The batch path encodes shared parts once per transaction and per detector: same messages.
    batch = anomaly_messages(records.rows, records.snapshots)
    assert [Anomaly.model_validate_json(m) for m in batch] == models
    assert [orjson.loads(m) for m in batch] == [orjson.loads(anomaly_message(r, features[r[4]])) for r in records.rows]


def test_messages_share_encoded_parts_only_between_rows_that_agree() -> None:
    row = _detections().records().rows[0]
    # Same transaction id and time, another tenant and amount (e.g. an aggregate job's rows): its own fields.
    other = (*row[:3], "globex", *row[4:14], None, None, *row[16:])
    first, second = (orjson.loads(m) for m in anomaly_messages([row, other], [(row[3], row[4], row[1], b'{"x":1.0}')]))
    assert (first["tenant_id"], first["amount"], first["currency"]) == (row[3], str(row[14]), row[15])
    assert (second["tenant_id"], second["amount"], second["currency"]) == ("globex", None, None)
    # Ids are per tenant (ADR 0013): the snapshot is the one tenant's, not every tenant's with that id.
    assert (first["features"], second["features"]) == ({"x": 1.0}, {})


def test_bulk_ids_are_the_contract_ids() -> None:
    ids_in = ["tx-1", "", "tx-ü-☃", "x" * 128, "tx-1"]
    tenants = ["acme", "acme", "globex", "acme", "globex"]
    expected = [
        anomaly_id_for(tenant_id=tenant, transaction_id=t, detector_name="amount_zscore", detector_version="2")
        for tenant, t in zip(tenants, ids_in, strict=True)
    ]
    built = anomaly_ids(tenant_ids=tenants, transaction_ids=ids_in, detector_name="amount_zscore", detector_version="2")
    assert built == expected
    assert built[0] != built[4], "two tenants' tx-1 are two anomalies"
    assert [str(u) for u in built] == [str(u) for u in expected] and {u.version for u in built} == {5}
    assert len(set(built) | set(expected)) == len(expected), "equal ids hash alike"


def test_group_ids_get_the_topic_prefix_once() -> None:
    settings = SETTINGS.model_copy(update={"kafka_topic_prefix": "staging."})
    assert prefixed_group(settings, "vigil-detect-statistical") == "staging.vigil-detect-statistical"
    assert prefixed_group(settings, "staging.vigil-detect-rules") == "staging.vigil-detect-rules"


def test_end_to_end_latency_is_labelled_by_detector_family() -> None:
    vectors, _ = labelled_batch(seed=1, size=3)
    vectors = [
        v.model_copy(update={"transaction": v.transaction.model_copy(update={"ingested_at": NOW})}) for v in vectors
    ]

    def count(label: str) -> float:
        return sum(
            s.value
            for family in metrics.END_TO_END_LATENCY.collect()
            for s in family.samples
            if s.name.endswith("_count") and s.labels.get("detector_family") == label
        )

    before = count(DetectorFamily.STATISTICAL.value)
    DetectionHandler._observe_latency(vectors, families={DetectorFamily.STATISTICAL.value})
    assert count(DetectorFamily.STATISTICAL.value) - before == 3
    assert count("detect-statistical") == 0, "the dashboard groups by family, not by service"


def test_split_records_keeps_each_transaction_in_one_part_and_loses_nothing() -> None:
    records = _detections(size=2000).records()
    parts = split_records(records.rows, records.snapshots, parts=3)
    assert len(parts) == 3
    assert sorted(row[0] for part in parts for row in part.rows) == sorted(row[0] for row in records.rows)
    assert sorted(s[1] for part in parts for s in part.snapshots) == sorted(s[1] for s in records.snapshots)
    home: dict[str, int] = {}
    for index, part in enumerate(parts):
        for transaction in [row[4] for row in part.rows] + [s[1] for s in part.snapshots]:
            assert home.setdefault(transaction, index) == index, f"{transaction} is split over two parts"
        positions = [records.rows.index(row) for row in part.rows]
        assert positions == sorted(positions), "a part keeps the batch's order"
    assert split_records(records.rows, records.snapshots, parts=1)[0].rows is records.rows


@pytest.mark.integration
@pytest.mark.parametrize("connections", [1, 2])
def test_replays_and_overlaps_insert_only_new_rows_and_count_cases_once(
    topics: Settings, db: Engine, connections: int
) -> None:
    writer = AnomalyWriter(
        engine=db,
        producer=DeliveringProducer(topics, service="test"),
        settings=topics,
        service="test",
        connections=connections,
    )
    # Large enough that with two connections every write below is split (parts of >= 500 rows).
    records = _detections(size=5000 if connections > 1 else 400).records()
    rows, snapshots = list(records.rows), list(records.snapshots)
    first, rest = rows[: len(rows) // 2], rows[len(rows) // 2 :]

    def write(part: list[AnomalyRow]) -> int:
        # Every part brings every snapshot: most are stored already (another detector service got there first).
        return writer.write_records(AnomalyRecords(rows=part, snapshots=snapshots))

    assert write(first) == len(first)  # fast path: COPY straight into the table
    with db.connect() as connection:
        writers = connection.execute(text("SELECT count(DISTINCT xmin::text) FROM anomalies")).scalar_one()
    assert writers == connections, "one database transaction per part"
    assert write(first + rest + rest[:5]) == len(rest), "overlap: only the new rows, each once"
    assert write(rows) == 0, "a full replay inserts nothing"
    with db.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM anomalies")).scalar_one() == len(rows)
        stored: dict[str, object] = dict(
            connection.execute(text("SELECT transaction_id, features FROM anomaly_features")).all()
        )
        cases: dict[str, int] = dict(connection.execute(text("SELECT transaction_id, anomaly_count FROM cases")).all())
        severities: dict[str, str] = dict(
            connection.execute(text("SELECT transaction_id, max_severity FROM cases")).all()
        )
    expected: dict[str, int] = {}
    for row in rows:
        expected[row[4]] = expected.get(row[4], 0) + 1
    assert cases == expected, "cases count every anomaly once, however often the batch is replayed"
    critical = {row[4] for row in rows if row[12] == "critical"}
    assert {tx for tx, severity in severities.items() if severity == "critical"} == critical
    assert stored == {s[1]: orjson.loads(s[3]) for s in snapshots}, "each transaction's snapshot, once"
    published = [Anomaly.model_validate_json(m.value() or b"") for m in read_all(topics, topics.topic(ANOMALIES))]
    assert {a.anomaly_id for a in published} == {row[0] for row in rows}, "replays publish again; consumers dedup"
    assert all(a.features == {} for a in published), "the snapshot stays in the database, off the topic"
    writer.close()


@pytest.mark.integration
def test_two_tenants_transactions_with_one_id_are_stored_apart(topics: Settings, db: Engine) -> None:
    """Ids are unique per tenant (ADR 0013): anomalies, snapshots and cases of each tenant's `tx-1`."""
    writer = AnomalyWriter(
        engine=db, producer=DeliveringProducer(topics, service="test"), settings=topics, service="test"
    )
    reason = Reason(feature="amount", value=1.0, text="unusual amount")
    models = [
        Anomaly.build(
            detected_at=NOW,
            event_time=NOW,
            tenant_id=tenant,
            transaction_id="tx-1",
            entity_type="account",
            entity_id=f"acc-{tenant}",
            detector_family=DetectorFamily.STATISTICAL,
            detector_name="amount_zscore",
            detector_version="1",
            score_raw=score,
            score=score,
            severity="warning",
            reasons=[reason],
            features={"amount_zscore": score},
        )
        for tenant, score in (("acme", 3.0), ("globex", 4.0))
    ]
    assert models[0].anomaly_id != models[1].anomaly_id
    assert writer.write(models) == 2
    assert writer.write(models) == 0, "each tenant's anomaly is idempotent on its own id"
    with db.connect() as connection:
        snapshots = connection.execute(text("SELECT tenant_id, features FROM anomaly_features ORDER BY 1")).all()
        cases = connection.execute(text("SELECT tenant_id, anomaly_count, max_score FROM cases ORDER BY 1")).all()
    assert [tuple(row) for row in snapshots] == [("acme", {"amount_zscore": 3.0}), ("globex", {"amount_zscore": 4.0})]
    assert [tuple(row) for row in cases] == [("acme", 1, 3.0), ("globex", 1, 4.0)]
    writer.close()


@pytest.mark.integration
def test_a_part_that_fails_fails_the_batch_and_its_replay_stores_exactly_the_rest(topics: Settings, db: Engine) -> None:
    writer = AnomalyWriter(
        engine=db, producer=DeliveringProducer(topics, service="test"), settings=topics, service="test", connections=2
    )
    records = _detections(size=5000).records()
    rows = list(records.rows)
    broken = [*rows[:-1], (*rows[-1][:12], "x" * 40, *rows[-1][13:])]  # severity too long for its column
    with pytest.raises(psycopg.errors.StringDataRightTruncation):
        writer.write_records(AnomalyRecords(rows=broken, snapshots=records.snapshots))
    with db.connect() as connection:
        stored = connection.execute(text("SELECT count(*) FROM anomalies")).scalar_one()
    assert 0 < stored < len(rows), "the other part committed; the failing one stored nothing"
    assert writer.write_records(records, publish=False) == len(rows) - stored, "the replay stores only the rest"
    with db.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM anomalies")).scalar_one() == len(rows)
        cases: dict[str, int] = dict(connection.execute(text("SELECT transaction_id, anomaly_count FROM cases")).all())
    expected: dict[str, int] = {}
    for row in rows:
        expected[row[4]] = expected.get(row[4], 0) + 1
    assert cases == expected, "each case counts each of its anomalies once across the failure and the replay"
    writer.close()


class _Broken:
    """A detector that breaks the contract in one of two ways."""

    family = DetectorFamily.STATISTICAL
    version = "1"

    def __init__(self, name: str) -> None:
        self.name = name

    def score(self, batch: FeatureBatch) -> Scores:
        raw = np.full(len(batch), np.inf if self.name == "infinite" else 1.0)
        return Scores(raw=raw, normalised=np.full(len(batch), 90.0))

    def explain(self, batch: FeatureBatch, index: int) -> list[Reason]:
        return [] if self.name == "silent" else [Reason(feature="amount", text="Flagged for a test.")]


@pytest.mark.parametrize("name", ["infinite", "silent"])
def test_the_fast_path_keeps_the_contract_the_models_enforce(name: str) -> None:
    vectors, _ = labelled_batch(seed=1, size=3)
    with pytest.raises(DetectionError, match="silent" if name == "silent" else "non-finite"):
        detect_batch(detectors=[_Broken(name)], batch=FeatureBatch(vectors), thresholds=Thresholds())
