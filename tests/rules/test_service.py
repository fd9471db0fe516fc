"""`vigil run detect-rules` on the real stack: anomalies written, rule changes applied without restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from core.contracts import FeatureVector
from core.kafka import DeliveringProducer, StopFlag, read_all
from core.schema import anomalies
from core.settings import Settings
from core.topics import ANOMALIES, TX_DLQ, TX_FEATURES
from rules import create_rule, disable, publish_version
from tests.rules.factories import vector
from tests.waiting import wait_for
from vigil.commands.rules import run_rules_service

pytestmark = pytest.mark.integration
POLL_SECONDS = 0.3


@pytest.fixture
def service(topics: Settings, db: Engine) -> Iterator[StopFlag]:
    create_rule(engine=db, rule_id="big", name="Big payment", expression="amount > 100", author="ana")
    stop = StopFlag()
    thread = threading.Thread(
        target=run_rules_service,
        kwargs={"settings": topics, "group_id": "rules-test", "stop": stop, "poll_seconds": POLL_SECONDS},
        daemon=True,
    )
    thread.start()
    yield stop
    stop.set()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the service did not stop within 15 s"


def _send(settings: Settings, vectors: list[FeatureVector], *, raw: list[bytes] | None = None) -> None:
    producer = DeliveringProducer(settings, service="test")
    for v in vectors:
        producer.produce(settings.topic(TX_FEATURES), v.model_dump_json().encode(), key=v.transaction.account_id)
    for value in raw or []:
        producer.produce(settings.topic(TX_FEATURES), value, key="bad")
    producer.flush_or_raise()


def _flagged(db: Engine) -> dict[str, set[tuple[str, str]]]:
    """Transaction id -> every (detector name, version) that flagged it."""
    flagged: dict[str, set[tuple[str, str]]] = {}
    with db.connect() as connection:
        rows = connection.execute(
            select(anomalies.c.transaction_id, anomalies.c.detector_name, anomalies.c.detector_version)
        )
        for row in rows:
            flagged.setdefault(row.transaction_id, set()).add((row.detector_name, row.detector_version))
    return flagged


def test_rule_changes_apply_to_later_messages_without_restart(service: StopFlag, topics: Settings, db: Engine) -> None:
    _send(topics, [vector(1, amount="50.00"), vector(2, amount="150.00"), vector(3, amount="500.00")])
    wait_for(lambda: {"tx-2", "tx-3"} <= set(_flagged(db)), timeout=60, what="tx-2 and tx-3 flagged")
    assert _flagged(db) == {"tx-2": {("rule:big", "1")}, "tx-3": {("rule:big", "1")}}

    # Version 2 raises the bar; after one poll interval the running service uses it.
    publish_version(engine=db, rule_id="big", author="bo", expression="amount > 300")
    time.sleep(POLL_SECONDS * 4)
    _send(topics, [vector(4, amount="200.00"), vector(5, amount="400.00")])
    wait_for(lambda: "tx-5" in _flagged(db), timeout=60, what="tx-5 flagged")
    flagged = _flagged(db)
    assert flagged["tx-5"] == {("rule:big", "2")}
    assert "tx-4" not in flagged  # 200 would have matched version 1

    # A new rule and a disabled one, again without restart.
    create_rule(engine=db, rule_id="far", name="Far away", expression="country == 'NG'", author="ana")
    disable(engine=db, rule_id="big", actor="bo")
    time.sleep(POLL_SECONDS * 4)
    _send(topics, [vector(6, amount="900.00", country="NG")], raw=[b"{not json"])
    wait_for(lambda: "tx-6" in _flagged(db), timeout=60, what="tx-6 flagged")
    assert _flagged(db)["tx-6"] == {("rule:far", "1")}  # "big" (900 > 300) is disabled now

    published = {m.key() for m in read_all(topics, topics.topic(ANOMALIES))}
    assert len(published) >= 1
    dead = read_all(topics, topics.topic(TX_DLQ))
    assert [m.value() for m in dead] == [b"{not json"]  # malformed input is dead-lettered, not a crash


def test_cli_service_starts_loads_rules_and_stops_on_sigterm(topics: Settings, db: Engine) -> None:
    create_rule(engine=db, rule_id="big", name="Big payment", expression="amount > 100", author="ana")
    env = {
        **os.environ,
        "VIGIL_DATABASE_URL": topics.database_url,
        "VIGIL_KAFKA_TOPIC_PREFIX": topics.kafka_topic_prefix,
        "VIGIL_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("vigil")), "run", "detect-rules", "--group", "rules-cli-test"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _send(topics, [vector(7, amount="700.00")])
        wait_for(lambda: "tx-7" in _flagged(db), timeout=90, what="tx-7 flagged")
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, stderr = process.communicate(timeout=15)
        assert time.monotonic() - started < 10, "must stop within 10 s of SIGTERM"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert '"msg": "rules loaded"' in stderr and '"rules": 1' in stderr
    assert _flagged(db)["tx-7"] == {("rule:big", "1")}
