"""Serving logic without the network: alias following, swaps, the circuit breaker, failing models.

The registry here is an in-memory `ModelSource` (the Protocol the real MLflow registry
implements); the same behaviours run against real MLflow and Kafka in test_service.py
and test_mlflow_outage.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import REGISTRY

from core.contracts import DetectorFamily
from core.detection import FeatureBatch, Thresholds, detect
from detectors.ml import CircuitBreaker, MLDetector, ModelKind, ModelWatcher, ServedModels, UnavailableModel
from detectors.ml.model import FittedModel
from tests.detectors.factories import labelled_batch
from tests.ml.factories import fitted_model


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class MemoryRegistry:
    """Aliases and versions in a dict; `down` makes every call fail like an unreachable server."""

    def __init__(self) -> None:
        self.versions: dict[str, FittedModel] = {}
        self.alias: str | None = None
        self.down = False
        self.loads = 0

    def resolve(self, name: str, alias: str) -> str:
        if self.down:
            raise ConnectionError("registry unreachable")
        if self.alias is None:
            raise LookupError("no champion")
        return self.alias

    def load(self, name: str, version: str) -> FittedModel:
        if self.down:
            raise ConnectionError("registry unreachable")
        self.loads += 1
        model = self.versions[version]
        model.check()
        return model


class Exploding:
    """A scorer whose native library fails (corrupt state, missing symbol)."""

    def fit(self, matrix: object, target: object, *, seed: int) -> None:
        return None

    def raw(self, matrix: object) -> np.ndarray:
        raise RuntimeError("corrupt model state")


def _gauge(name: str, detector: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"detector": detector})


def _watcher(registry: MemoryRegistry, clock: Clock, name: str = "m") -> ModelWatcher:
    breaker = CircuitBreaker(failure_threshold=2, max_backoff=8.0, clock=clock)
    return ModelWatcher(name=name, alias="champion", source=registry, breaker=breaker, reload_seconds=5.0)


def test_breaker_opens_after_threshold_backs_off_and_closes_on_success() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, max_backoff=4.0, clock=clock)
    breaker.record_failure()
    assert not breaker.is_open and breaker.allow()
    breaker.record_failure()
    assert breaker.is_open and not breaker.allow()
    clock.now = 1.0  # base backoff 1 s
    assert breaker.allow()
    breaker.record_failure()
    clock.now = 2.5
    assert not breaker.allow()  # second open period is 2 s
    clock.now = 3.0
    assert breaker.allow()
    for _ in range(5):
        breaker.record_failure()
    assert breaker.open_until - clock.now == 4.0  # capped
    breaker.record_success()
    assert not breaker.is_open and breaker.allow()


def test_watcher_follows_the_alias_and_swaps_versions() -> None:
    registry, clock = MemoryRegistry(), Clock()
    registry.versions = {"1": fitted_model(ModelKind.ISOLATION_FOREST), "2": fitted_model(ModelKind.ECOD)}
    watcher = _watcher(registry, clock, name="swap-test")
    watcher.poll()
    assert watcher.detector is None and isinstance(watcher.current(), UnavailableModel)
    registry.alias = "1"
    watcher.poll()
    first = watcher.detector
    assert first is not None and first.version == "1" and not watcher.degraded
    watcher.poll()
    assert watcher.detector is first and registry.loads == 1  # unchanged alias: nothing reloaded
    registry.alias = "2"
    watcher.poll()
    assert watcher.detector is not None and watcher.detector.version == "2"
    assert watcher.detector.model is registry.versions["2"]
    assert _gauge("vigil_ml_model_version", "swap-test") == 2.0
    assert _gauge("vigil_detector_degraded", "swap-test") == 0.0


def test_registry_outage_keeps_the_loaded_model_serving_and_reports_degraded_until_it_returns() -> None:
    registry, clock = MemoryRegistry(), Clock()
    registry.versions = {"1": fitted_model(ModelKind.ISOLATION_FOREST), "2": fitted_model(ModelKind.ECOD)}
    registry.alias = "1"
    watcher = _watcher(registry, clock, name="outage-test")
    watcher.poll()
    serving = watcher.detector
    registry.down = True
    watcher.poll()
    assert not watcher.degraded  # one failure may be a blip
    watcher.poll()
    assert watcher.degraded and _gauge("vigil_detector_degraded", "outage-test") == 1.0
    assert watcher.current() is serving  # still scoring with the model in memory
    registry.down = False
    registry.alias = "2"  # promoted while the registry was unreachable
    watcher.poll()
    assert watcher.degraded  # the breaker waits out its backoff before probing
    clock.now += 1.0
    watcher.poll()
    assert not watcher.degraded and _gauge("vigil_detector_degraded", "outage-test") == 0.0
    assert watcher.detector is not None and watcher.detector.version == "2"


def test_a_version_that_fails_its_check_is_never_swapped_in() -> None:
    registry, clock = MemoryRegistry(), Clock()
    good = fitted_model(ModelKind.ISOLATION_FOREST)
    bad = FittedModel(**{**good.__dict__, "probe_scores": good.probe_scores + 1.0})
    registry.versions = {"1": good, "2": bad}
    registry.alias = "1"
    watcher = _watcher(registry, clock, name="bad-version-test")
    watcher.poll()
    registry.alias = "2"
    watcher.poll()
    watcher.poll()
    assert watcher.detector is not None and watcher.detector.version == "1"
    assert watcher.degraded and "reproduce" in (watcher.last_error or "")


def test_a_failing_model_judges_nothing_counts_it_and_recovers() -> None:
    vectors, _ = labelled_batch(seed=5, size=50)
    detector = MLDetector(model=fitted_model(ModelKind.ISOLATION_FOREST), model_name="failing-test", model_version="1")
    good_scorer = detector.model.scorer
    detector.model = FittedModel(**{**detector.model.__dict__, "scorer": Exploding()})
    skipped_before = (
        REGISTRY.get_sample_value("vigil_detector_skipped_total", {"detector": "failing-test", "reason": "model_error"})
        or 0.0
    )
    for _ in range(2):
        scores = detector.score(FeatureBatch(vectors))
        assert np.isnan(scores.normalised).all()
    assert detector.health.consecutive_failures == 2
    skipped = REGISTRY.get_sample_value(
        "vigil_detector_skipped_total", {"detector": "failing-test", "reason": "model_error"}
    )
    assert skipped == skipped_before + 2 * len(vectors)
    detector.model = FittedModel(**{**detector.model.__dict__, "scorer": good_scorer})
    assert np.isfinite(detector.score(FeatureBatch(vectors)).normalised).all()
    assert detector.health.consecutive_failures == 0


def test_detections_carry_model_version_and_feature_reasons() -> None:
    vectors, labels = labelled_batch(seed=9, size=400, outlier_share=0.05)
    model = fitted_model(ModelKind.SUPERVISED)  # learnt "8-20x the usual amount" from labels
    detector = MLDetector(model=model, model_name="reasons-test", model_version="7")
    anomalies = detect(detectors=[detector], batch=FeatureBatch(vectors), thresholds=Thresholds())
    assert anomalies, "planted outliers should be flagged"
    flagged = {a.transaction_id for a in anomalies}
    planted = {v.transaction.transaction_id for v, label in zip(vectors, labels, strict=True) if label}
    assert len(flagged & planted) / len(flagged) >= 0.8  # mostly the planted ones
    for anomaly in anomalies:
        assert anomaly.detector_family is DetectorFamily.ML
        assert (anomaly.detector_name, anomaly.detector_version) == ("reasons-test", "7")
        assert 1 <= len(anomaly.reasons) <= 3
        top = anomaly.reasons[0]
        assert top.feature in detector.model.feature_names and top.baseline is not None
        assert top.contribution is not None and 0 < top.contribution <= 1


def test_served_models_give_a_placeholder_until_a_model_loads() -> None:
    registry, clock = MemoryRegistry(), Clock()
    served = ServedModels([_watcher(registry, clock, name="placeholder-test")])
    vectors, _ = labelled_batch(seed=1, size=10)
    (only,) = served()
    assert isinstance(only, UnavailableModel) and only.name == "placeholder-test"
    assert np.isnan(only.score(FeatureBatch(vectors)).normalised).all()
    assert REGISTRY.get_sample_value(
        "vigil_detector_skipped_total", {"detector": "placeholder-test", "reason": "no_model"}
    ) == pytest.approx(10)
