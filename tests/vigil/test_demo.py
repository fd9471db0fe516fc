"""What `vigil demo` prepares and checks before and while it streams, against the real stack."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from core import schema
from core.contracts import Transaction
from core.settings import Settings
from tests.core.test_contracts import valid_payload
from tests.core.test_database import _tx_row
from vigil.demo import DEMO_USERS, has_champion, history_rows, prepare_demo, wait_until_stored

pytestmark = pytest.mark.integration


def _store(db: Engine, *moments: datetime) -> None:
    rows = [
        _tx_row(Transaction.model_validate(valid_payload(transaction_id=f"tx-{i}", occurred_at=at.isoformat())))
        for i, at in enumerate(moments)
    ]
    with db.begin() as connection:
        connection.execute(schema.transactions.insert(), rows)


def test_history_is_counted_inside_its_window_only(db: Engine, settings: Settings) -> None:
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=14)
    _store(db, start - timedelta(seconds=1), start, end - timedelta(hours=2), end)

    assert history_rows(settings=settings, start=start, end=end) == 2  # [start, end)
    assert wait_until_stored(settings=settings, start=start, end=end, timeout=60) == 2


def test_waiting_for_history_that_never_arrives_times_out(db: Engine, settings: Settings) -> None:
    end = datetime.now(UTC)
    with pytest.raises(TimeoutError, match="0 rows stored"):
        wait_until_stored(settings=settings, start=end - timedelta(days=1), end=end, timeout=4)


def test_prepare_is_idempotent_and_keeps_the_same_passwords(db: Engine, settings: Settings, tmp_path: Path) -> None:
    local = settings.model_copy(update={"state_dir": tmp_path})
    first = prepare_demo(settings=local)
    second = prepare_demo(settings=local)

    assert first == second
    assert set(first) == set(DEMO_USERS)
    stored = json.loads((tmp_path / "demo-credentials.json").read_text())
    assert {user: password for user, (_, password) in first.items()} == stored
    assert (tmp_path / "demo-credentials.json").stat().st_mode & 0o077 == 0  # owner-only
    with db.connect() as connection:
        principals = set(connection.execute(select(schema.principals.c.principal_id)).scalars())
        rules = connection.execute(select(func.count()).select_from(schema.rules)).scalar_one()
    assert set(DEMO_USERS) <= principals
    assert rules > 0


def test_a_model_without_a_champion_is_reported_as_such(settings: Settings) -> None:
    assert has_champion(settings=settings, name=f"never-registered-{uuid.uuid4().hex[:8]}") is False
