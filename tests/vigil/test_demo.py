"""What `vigil demo` prepares and checks before and while it streams, against the real stack."""

from __future__ import annotations

import json
import signal
import sys
import time
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
from vigil.supervisor import ops_ports, supervise

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


def test_each_local_service_gets_the_ops_port_the_status_page_probes() -> None:
    targets = {
        "ingest": "http://127.0.0.1:9101",
        "features": "http://localhost:9102",
        "detect-ml": "http://detect-ml.vigil.svc:9100",  # another host: not started by `vigil run all`
    }
    assert ops_ports(targets) == {
        "ingest": {"VIGIL_METRICS_PORT": "9101"},
        "features": {"VIGIL_METRICS_PORT": "9102"},
    }


def test_supervised_children_get_the_shared_and_their_own_environment(tmp_path: Path) -> None:
    show = [sys.executable, "-c", "import os; print(os.environ['SHARED'], os.environ.get('VIGIL_METRICS_PORT'))"]
    code = supervise(
        [("ingest", show), ("api", show)],
        log_dir=tmp_path,
        env={"SHARED": "yes"},
        child_env={"ingest": {"VIGIL_METRICS_PORT": "9101"}},
        until=time.monotonic() + 3,
    )

    assert code == 0
    assert (tmp_path / "ingest.log").read_text().split() == ["yes", "9101"]
    assert (tmp_path / "api.log").read_text().split() == ["yes", "None"]


def test_supervising_gives_back_the_callers_signal_handlers(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGINT)
    supervise([], log_dir=tmp_path, until=time.monotonic() + 0.5)
    assert signal.getsignal(signal.SIGINT) is before


def test_running_every_service_creates_the_stream_topics_of_a_fresh_prefix(settings: Settings, tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient

    from core.topics import STREAM_TOPICS
    from vigil.commands.demo import _supervise

    fresh = settings.model_copy(update={"kafka_topic_prefix": f"fresh{uuid.uuid4().hex[:8]}.", "state_dir": tmp_path})
    _supervise(fresh, [], until=time.monotonic() + 0.5)

    admin = AdminClient({"bootstrap.servers": fresh.kafka_bootstrap})
    wanted = {fresh.topic(spec.name) for spec in STREAM_TOPICS}
    try:
        assert wanted <= set(admin.list_topics(timeout=10).topics)
    finally:
        admin.delete_topics(sorted(wanted & set(admin.list_topics(timeout=10).topics)))
