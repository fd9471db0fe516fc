"""The labels store on the real database: idempotent imports, who/when/why, what training may know."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from core.schema import labels
from detectors.ml import LabelFileError, LabelRecord, import_labels, known_labels, normalise_label, read_label_file

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def _rows(db: Engine) -> list[tuple[str, str, str, str, str, str | None]]:
    with db.connect() as connection:
        query = select(
            labels.c.tenant_id,
            labels.c.transaction_id,
            labels.c.label,
            labels.c.source,
            labels.c.author,
            labels.c.reason,
        ).order_by(labels.c.transaction_id)
        return [tuple(row) for row in connection.execute(query)]


def test_import_is_an_idempotent_upsert_that_only_touches_changed_rows(db: Engine) -> None:
    records = [
        LabelRecord("acme", "tx-1", "confirmed_fraud", reason="chargeback 4837"),
        LabelRecord("acme", "tx-2", "expected"),
        LabelRecord("acme", "tx-1", "confirmed_fraud", reason="chargeback 4837"),  # duplicate row in the file
    ]
    first = import_labels(engine=db, records=records, author="import:cb.csv", now=NOW)
    assert (first.rows, first.inserted, first.updated, first.unchanged) == (2, 2, 0, 0)
    again = import_labels(engine=db, records=records, author="import:cb.csv", now=NOW + timedelta(days=1))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    with db.connect() as connection:
        stamps = set(connection.execute(select(labels.c.labelled_at)).scalars())
    assert stamps == {NOW}  # an unchanged re-import does not pretend to be new knowledge

    corrected = [LabelRecord("acme", "tx-2", "false_positive", reason="customer confirmed")]
    fix = import_labels(engine=db, records=corrected, author="ops", now=NOW + timedelta(days=2))
    assert (fix.inserted, fix.updated, fix.unchanged) == (0, 1, 0)
    assert _rows(db) == [
        ("acme", "tx-1", "confirmed_fraud", "import", "import:cb.csv", "chargeback 4837"),
        ("acme", "tx-2", "false_positive", "import", "ops", "customer confirmed"),
    ]


def test_an_import_never_overwrites_an_analyst_verdict(db: Engine) -> None:
    with db.begin() as connection:
        connection.execute(
            labels.insert().values(
                tenant_id="acme", transaction_id="tx-9", label="false_positive", source="analyst", author="ana"
            )
        )
    import_labels(engine=db, records=[LabelRecord("acme", "tx-9", "confirmed_fraud")], author="import:x", now=NOW)
    assert sorted((r[2], r[3]) for r in _rows(db)) == [("confirmed_fraud", "import"), ("false_positive", "analyst")]


def test_known_labels_stop_at_the_cutoff(db: Engine) -> None:
    import_labels(engine=db, records=[LabelRecord("acme", "early", "confirmed_fraud")], author="a", now=NOW)
    import_labels(
        engine=db, records=[LabelRecord("acme", "late", "confirmed_fraud")], author="a", now=NOW + timedelta(hours=1)
    )
    assert {label.transaction_id for label in known_labels(engine=db, cutoff=NOW)} == {"early"}
    assert {label.transaction_id for label in known_labels(engine=db)} == {"early", "late"}
    with db.begin() as connection:  # a label given an explicit time in the file keeps it
        connection.execute(update(labels).values(labelled_at=NOW - timedelta(days=30)))
    assert len(known_labels(engine=db, cutoff=NOW - timedelta(days=1))) == 2


def test_label_files_with_mapping_aliases_and_defaults(tmp_path: Path) -> None:
    chargebacks = tmp_path / "cb.csv"
    chargebacks.write_text(
        "ref,when,note,reported\n000123,2026-10-01T10:00:00Z,card stolen,2026-10-09T00:00:00+00:00\n"
        "000124,2026-10-02T11:00:00Z,,\n"
    )
    records = read_label_file(
        chargebacks,
        mapping={"transaction_id": "ref", "event_time": "when", "reason": "note", "labelled_at": "reported"},
        tenant_id="acme",
        label="confirmed_fraud",
    )
    assert records[0] == LabelRecord(
        tenant_id="acme",
        transaction_id="000123",  # ids stay text
        label="confirmed_fraud",
        reason="card stolen",
        event_time=datetime(2026, 10, 1, 10, tzinfo=UTC),
        labelled_at=datetime(2026, 10, 9, tzinfo=UTC),
    )
    assert records[1].labelled_at is None and records[1].reason is None
    generated = tmp_path / "gen.csv"
    generated.write_text(
        "transaction_id,tenant_id,label,typology,occurred_at\ntx-1,t1,fraud,card_testing,2026-10-01T00:00:00Z\n"
    )
    (record,) = read_label_file(generated)
    assert (record.label, record.reason) == ("confirmed_fraud", "typology: card_testing")
    assert [normalise_label(v) for v in ("FP", "legit", "1", "Chargeback")] == [
        "false_positive",
        "expected",
        "confirmed_fraud",
        "confirmed_fraud",
    ]


def test_bad_label_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("transaction_id,tenant_id,label\ntx-1,acme,maybe\n")
    with pytest.raises(LabelFileError, match="'maybe' is not a label"):
        read_label_file(path)
    path.write_text("id,label\ntx-1,fraud\n")
    with pytest.raises(LabelFileError, match="no transaction_id column"):
        read_label_file(path)
    with pytest.raises(LabelFileError, match="no tenant_id column"):
        read_label_file(path, mapping={"transaction_id": "id"})
    with pytest.raises(LabelFileError, match="no column 'nope'"):
        read_label_file(path, mapping={"transaction_id": "nope"}, tenant_id="acme")
