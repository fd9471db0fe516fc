"""`detect-ml` on the real stack: train -> register -> promote -> the running service swaps models
without restart and without losing a message -> rollback swaps back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from core.schema import anomalies
from core.settings import Settings
from detectors.ml import ModelKind, ModelRegistry
from tests.ml.factories import (
    Dataset,
    Traffic,
    detect_ml_thread,
    served_version,
    train_and_register,
    versions_by_transaction,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def test_new_champion_is_picked_up_without_restart_and_rollback_works(
    ml_settings: Settings, dataset: Dataset, db: Engine, model_name: str
) -> None:
    registry = ModelRegistry(ml_settings.mlflow_tracking_uri)

    def register(kind: ModelKind, days: float) -> str:
        return train_and_register(
            registry=registry,
            experiment=ml_settings.ml_experiment,
            dataset=dataset,
            name=model_name,
            kind=kind,
            days=days,
        )

    assert register(ModelKind.ECOD, days=3) == "1"
    registry.promote(name=model_name)
    traffic = Traffic(ml_settings, dataset)

    def scored(ids: set[str]) -> bool:
        return set(versions_by_transaction(db, model_name)) >= ids

    def versions(ids: set[str]) -> set[str]:
        found = versions_by_transaction(db, model_name)
        return {version for tx in ids for version in found[tx]}

    with detect_ml_thread(settings=ml_settings, source=registry, names=[model_name], group=f"{model_name}-g") as (
        thread,
        health,
    ):
        first = traffic.send(300)
        wait_for(lambda: scored(first), what="the first batch scored by version 1")
        assert versions(first) == {"1"}
        assert health.ready()[1][f"model:{model_name}"] is True

        # Version 2 is trained and promoted while the service runs; traffic keeps flowing through the swap.
        assert register(ModelKind.ISOLATION_FOREST, days=4) == "2"
        registry.promote(name=model_name)
        during = traffic.send(300)
        wait_for(lambda: served_version(model_name) == 2.0, what="the running service to load version 2")
        after = traffic.send(300)
        wait_for(lambda: scored(during | after), what="the batches around the swap")
        assert versions(during) <= {"1", "2"}  # every message scored by one version or the other
        assert versions(after) == {"2"}
        assert thread.is_alive()  # no restart

        registry.rollback(name=model_name)
        wait_for(lambda: served_version(model_name) == 1.0, what="the rollback to version 1")
        last = traffic.send(300)
        wait_for(lambda: scored(last), what="the batch after the rollback")
        assert versions(last) == {"1"}

        assert len(versions_by_transaction(db, model_name)) == len(first | during | after | last)  # nothing lost
        with db.connect() as connection:
            reasons = (
                connection.execute(
                    select(anomalies.c.reasons).where(
                        anomalies.c.detector_name == model_name, anomalies.c.detector_version == "2"
                    )
                )
                .scalars()
                .first()
            )
        assert reasons and {"feature", "value", "baseline", "contribution", "text"} <= set(reasons[0])


def test_cli_process_serves_the_champion_and_stops_on_sigterm(
    ml_settings: Settings, dataset: Dataset, db: Engine, model_name: str
) -> None:
    registry = ModelRegistry(ml_settings.mlflow_tracking_uri)
    version = train_and_register(
        registry=registry,
        experiment=ml_settings.ml_experiment,
        dataset=dataset,
        name=model_name,
        kind=ModelKind.ECOD,
        days=3,
    )
    registry.promote(name=model_name, version=version)
    env = {
        **os.environ,
        "VIGIL_DATABASE_URL": ml_settings.database_url,
        "VIGIL_KAFKA_TOPIC_PREFIX": ml_settings.kafka_topic_prefix,
        "VIGIL_MLFLOW_TRACKING_URI": ml_settings.mlflow_tracking_uri,
        "VIGIL_ML_MODEL_NAMES": f'["{model_name}"]',
        "VIGIL_METRICS_PORT": "0",
        "VIGIL_LOG_FORMAT": "json",
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("vigil")), "run", "detect-ml", "--group", f"{model_name}-cli"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        sent = Traffic(ml_settings, dataset).send(3000)
        # Default thresholds now: only what the model really flags becomes an anomaly.
        wait_for(lambda: bool(set(versions_by_transaction(db, model_name)) & sent), timeout=120, what="an anomaly")
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _, stderr = process.communicate(timeout=15)
        assert time.monotonic() - started < 10, "must stop within 10 s of SIGTERM"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr[-2000:]
    assert '"msg": "serving model version"' in stderr and f'"model": "{model_name}"' in stderr
    flagged = versions_by_transaction(db, model_name)
    assert 0 < len(flagged) < len(sent)  # the warning band, not everything
    assert all(versions == {version} for versions in flagged.values())
