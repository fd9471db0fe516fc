"""Kill -9 MLflow under a running detect-ml: nothing lost, degraded reported, recovery on its own.

The shared MLflow serves everyone else, so this test runs a private `mlflow server`
(own backend database in the shared PostgreSQL, own artifact directory, free port),
kills its whole process group with SIGKILL, and restarts it on the same port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url

from core.detection import Thresholds, run_detection_service
from core.kafka import StopFlag
from core.schema import anomalies
from core.settings import Settings
from detectors import statistical_detectors
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


class PrivateMlflow:
    """An `mlflow server` this test owns: started, SIGKILLed and restarted by process-group id."""

    def __init__(self, *, backend: str, artifacts: Path, log: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.backend = backend
        self.artifacts = artifacts
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def start(self) -> None:
        command = [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            self.backend,
            "--artifacts-destination",
            str(self.artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill -9 reaches every worker
                # As `vigil stack up` starts it: without the job runner's eight extra processes.
                env={**os.environ, "MLFLOW_TRACKING_URI": "", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )
        wait_for(self.healthy, timeout=180, what=f"private MLflow on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        wait_for(lambda: not self.healthy(), timeout=30, what="MLflow to be gone")


@pytest.fixture
def private_mlflow(stack: Settings, tmp_path: Path) -> Iterator[PrivateMlflow]:
    admin_url = make_url(stack.database_url)
    name = f"mlflow_outage_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    server = PrivateMlflow(
        backend=admin_url.set(database=name).render_as_string(hide_password=False),
        artifacts=tmp_path / "artifacts",
        log=tmp_path / "mlflow.log",
    )
    try:
        server.start()
        yield server
    finally:
        server.kill()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def degraded(name: str) -> bool:
    return REGISTRY.get_sample_value("vigil_detector_degraded", {"detector": name}) == 1.0


def test_mlflow_killed_while_detect_ml_runs(
    ml_settings: Settings,
    dataset: Dataset,
    db: Engine,
    private_mlflow: PrivateMlflow,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What `vigil run detect-ml` sets (fail_fast_http), scoped to this test: an outage shows up as a
    # refused connection at once instead of after minutes of client retries.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    settings = ml_settings.model_copy(update={"mlflow_tracking_uri": private_mlflow.uri})
    registry = ModelRegistry(private_mlflow.uri)
    name = f"outage-{uuid.uuid4().hex[:8]}"

    def register(days: float) -> str:
        return train_and_register(
            registry=registry, experiment="outage", dataset=dataset, name=name, kind=ModelKind.ECOD, days=days
        )

    assert register(days=3) == "1"
    registry.promote(name=name)
    traffic = Traffic(settings, dataset)

    def scored(ids: set[str]) -> bool:
        return set(versions_by_transaction(db, name)) >= ids

    # The statistical family runs beside it in its own consumer group and must not notice anything.
    statistical_stop = StopFlag()
    statistical = threading.Thread(
        target=run_detection_service,
        kwargs={
            "settings": settings,
            "service": "detect-statistical",
            "group_id": f"{name}-statistical",
            "detectors": lambda: statistical_detectors(settings=settings),
            "thresholds": Thresholds(warning=0.0, critical=80.0),
            "stop": statistical_stop,
        },
        daemon=True,
    )
    statistical.start()
    try:
        with detect_ml_thread(settings=settings, source=registry, names=[name], group=f"{name}-ml") as (_, health):
            before = traffic.send(200)
            wait_for(lambda: scored(before), what="scoring before the outage")
            assert not degraded(name) and health.ready()[1][f"model:{name}"]

            private_mlflow.kill()
            during = traffic.send(200)
            wait_for(lambda: degraded(name), timeout=30, what="detect-ml to report degraded")
            assert health.ready()[1][f"model:{name}"] is False  # readiness names the degraded model
            wait_for(lambda: scored(during), what="scoring during the outage (model kept in memory)")

            private_mlflow.start()  # same port, same backend: as after a crash-restart
            # Counted from MLflow answering again: its own start-up (minutes on a loaded machine) is not ours.
            started = time.monotonic()
            wait_for(lambda: not degraded(name), timeout=60, what="detect-ml to recover")
            recovered_after = time.monotonic() - started
            assert health.ready()[1][f"model:{name}"] is True

            assert register(days=4) == "2"  # the registry works again and the service follows it
            registry.promote(name=name)
            wait_for(lambda: served_version(name) == 2.0, what="the new champion after recovery")
            after = traffic.send(200)
            wait_for(lambda: scored(after), what="scoring after recovery")

            found = versions_by_transaction(db, name)
            assert len(found) == len(before | during | after)  # no message lost
            assert {v for tx in during for v in found[tx]} == {"1"}
            assert {v for tx in after for v in found[tx]} == {"2"}
            assert recovered_after < 60
    finally:
        statistical_stop.set()
        statistical.join(timeout=15)
    with db.connect() as connection:
        statistical_during = set(
            connection.execute(
                select(anomalies.c.transaction_id).where(
                    anomalies.c.detector_family == "statistical", anomalies.c.transaction_id.in_(during)
                )
            ).scalars()
        )
    assert statistical_during, "statistical detectors kept judging while MLflow was down"
