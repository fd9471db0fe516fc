"""Shared ML fixtures: one generated dataset per session, unique MLflow names per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from core.settings import Settings
from tests.ml.factories import Dataset, generate


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """30,000 seeded transactions over 8 days (2 % fraud) with their offline features."""
    return generate(tmp_path_factory.mktemp("ml-data"), rows=30_000, days=8)


@pytest.fixture
def model_name(stack: Settings) -> Iterator[str]:
    """A registered-model name no other test uses; the model is deleted afterwards."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name = f"vigil-test-{uuid.uuid4().hex[:10]}"
    yield name
    client = MlflowClient(tracking_uri=stack.mlflow_tracking_uri, registry_uri=stack.mlflow_tracking_uri)
    with contextlib.suppress(MlflowException):  # the test may never have registered it
        client.delete_registered_model(name)
    experiment = client.get_experiment_by_name(f"{name}-runs")
    if experiment is not None:
        client.delete_experiment(experiment.experiment_id)


@pytest.fixture
def ml_settings(topics: Settings, model_name: str) -> Settings:
    """Test settings with a private experiment (removed with the model) and fast reloads."""
    return topics.model_copy(
        update={
            "ml_experiment": f"{model_name}-runs",
            "ml_reload_seconds": 0.5,
            "ml_breaker_failures": 2,
            "ml_breaker_max_backoff_seconds": 2.0,
            "ml_label_delay_days": 1.0,
            "ml_warmup_days": 2.0,
        }
    )
