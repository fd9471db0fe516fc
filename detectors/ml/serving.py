"""Serving: `MLDetector` scores micro-batches; `ModelWatcher` follows the registry alias; a circuit breaker
keeps a failing MLflow or model from stopping the stream.

How the pieces behave (docs/ml.md, "Serving"):

- The detection loop asks `ServedModels` for the current detectors once per batch. A
  watcher thread resolves `models:/<name>@<alias>` every `ml_reload_seconds`; when the
  alias moves it loads the new version, checks it reproduces its training scores, and
  swaps it in between two batches. No restart, no consumer rebalance, no message skipped;
  the new version writes anomalies under its own version (a new natural key).
- MLflow down: the model already in memory keeps scoring every message. The breaker
  opens after `ml_breaker_failures` failed polls, the model reports degraded (readiness
  check `model:<name>` and `vigil_detector_degraded{detector=<name>}` = 1), and probes
  back off exponentially up to `ml_breaker_max_backoff_seconds`. The first successful
  poll closes it and picks up any alias change made meanwhile.
- A model that raises while scoring leaves that batch unjudged by ML (counted in
  `vigil_detector_skipped_total{reason="model_error"}`), is reported degraded after the
  same number of consecutive failures, and is retried on every batch. A version that
  fails its load-time check is never swapped in; the previous one keeps serving.
- Statistical and rule detectors run in their own consumer groups and never wait on this one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import numpy as np

from core import metrics
from core.contracts import DetectorFamily, Reason
from core.detection import FeatureBatch, FloatArray, Scores, Thresholds
from core.kafka import StopFlag
from core.memory import freeze_long_lived
from core.settings import Settings
from detectors.ml.columns import matrix_from_vectors
from detectors.ml.model import Contribution, FittedModel

log = logging.getLogger(__name__)

_STARTUP_WAIT_SECONDS: Final = 30.0
_MIN_WAIT_SECONDS: Final = 0.05


@dataclass
class ScoringHealth:
    """Consecutive scoring failures of one served model version."""

    consecutive_failures: int = 0
    last_error: str | None = None

    def failed(self, error: BaseException) -> None:
        self.consecutive_failures += 1
        self.last_error = f"{type(error).__name__}: {error}"

    def succeeded(self) -> None:
        self.consecutive_failures = 0
        self.last_error = None


def _format(value: float | None) -> str:
    if value is None:
        return "missing"
    return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"


def reason_for(contribution: Contribution) -> Reason:
    """An analyst-readable reason for one feature's part in a model score."""
    return Reason(
        feature=contribution.feature,
        value=contribution.value,
        baseline=contribution.baseline,
        contribution=round(contribution.share, 4),
        text=(
            f"{contribution.feature} is {_format(contribution.value)} where the model's training median is "
            f"{_format(contribution.baseline)} ({contribution.share:.0%} of this score's explanation)."
        ),
    )


@dataclass
class MLDetector:
    """One registered model version as a `core.detection.Detector` (family ml, name, registry version)."""

    model: FittedModel
    model_name: str
    model_version: str
    health: ScoringHealth = field(default_factory=ScoringHealth)
    family: DetectorFamily = field(default=DetectorFamily.ML, init=False)
    _memo: tuple[FeatureBatch, FloatArray] | None = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.model_name

    @property
    def version(self) -> str:
        return self.model_version

    def _matrix(self, batch: FeatureBatch) -> FloatArray:
        if self._memo is None or self._memo[0] is not batch:
            self._memo = (batch, matrix_from_vectors(batch.vectors, self.model.feature_names))
        return self._memo[1]

    def score(self, batch: FeatureBatch) -> Scores:
        """Score the whole batch in one vectorised call; a failing model judges nothing and says so."""
        try:
            matrix = self._matrix(batch)
            raw = self.model.raw_scores(matrix)
            if raw.shape != (len(batch),):
                raise ValueError(f"model returned {raw.shape} scores for {len(batch)} rows")
        except Exception as exc:  # the breaker's job: count, report, keep the stream moving
            self.health.failed(exc)
            metrics.DETECTOR_SKIPPED.labels(self.model_name, "model_error").inc(len(batch))
            log.warning("model failed to score a batch", extra={"model": self.model_name, "error": str(exc)})
            empty = np.full(len(batch), np.nan)
            return Scores(raw=empty, normalised=empty.copy())
        self.health.succeeded()
        metrics.ML_ROWS_SCORED.labels(self.model_name).inc(len(batch))
        normalised = self.model.normalise(raw)
        return Scores(raw=raw, normalised=np.where(np.isfinite(raw), normalised, np.nan))

    def explain(self, batch: FeatureBatch, index: int) -> list[Reason]:
        """Top contributing features of a flagged row, with values and training medians."""
        row = self._matrix(batch)[index]
        return [reason_for(c) for c in self.model.contributions(row)]


@dataclass
class UnavailableModel:
    """Stands in for a model that has never loaded: judges nothing, counts every row it could not judge."""

    model_name: str
    family: DetectorFamily = field(default=DetectorFamily.ML, init=False)

    @property
    def name(self) -> str:
        return self.model_name

    @property
    def version(self) -> str:
        return "unavailable"

    def score(self, batch: FeatureBatch) -> Scores:
        metrics.DETECTOR_SKIPPED.labels(self.model_name, "no_model").inc(len(batch))
        empty = np.full(len(batch), np.nan)
        return Scores(raw=empty, normalised=empty.copy())

    def explain(self, batch: FeatureBatch, index: int) -> list[Reason]:
        return [Reason(feature="model", text=f"Model {self.model_name} is not loaded; nothing was judged.")]


class CircuitBreaker:
    """Closed until `failure_threshold` consecutive failures; then open, allowing one probe per backoff period.

    Backoff doubles from `base_backoff` per further failure up to `max_backoff`; one success closes it.
    """

    def __init__(
        self,
        *,
        failure_threshold: int,
        max_backoff: float,
        base_backoff: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.max_backoff = max_backoff
        self.base_backoff = min(base_backoff, max_backoff)
        self._clock = clock
        self.failures = 0
        self.open_until = 0.0

    @property
    def is_open(self) -> bool:
        return self.failures >= self.failure_threshold

    def allow(self) -> bool:
        """May the caller try now? (always while closed; once per backoff period while open)"""
        return not self.is_open or self._clock() >= self.open_until

    def seconds_until_probe(self) -> float:
        return max(0.0, self.open_until - self._clock()) if self.is_open else 0.0

    def record_success(self) -> None:
        self.failures = 0
        self.open_until = 0.0

    def record_failure(self) -> None:
        self.failures += 1
        if self.is_open:
            steps = self.failures - self.failure_threshold
            self.open_until = self._clock() + min(self.base_backoff * 2.0**steps, self.max_backoff)


class ModelSource(Protocol):
    """Where served models come from (`detectors.ml.registry.ModelRegistry`)."""

    def resolve(self, name: str, alias: str) -> str: ...

    def load(self, name: str, version: str) -> FittedModel: ...


class ModelWatcher:
    """Keeps one model name's `@alias` version loaded, swapping it when the alias moves."""

    def __init__(
        self, *, name: str, alias: str, source: ModelSource, breaker: CircuitBreaker, reload_seconds: float
    ) -> None:
        self.name = name
        self.alias = alias
        self._source = source
        self.breaker = breaker
        self.reload_seconds = reload_seconds
        self._detector: MLDetector | None = None
        self._placeholder = UnavailableModel(model_name=name)
        self.last_error: str | None = None

    @property
    def detector(self) -> MLDetector | None:
        return self._detector

    def current(self) -> MLDetector | UnavailableModel:
        return self._detector or self._placeholder

    @property
    def degraded(self) -> bool:
        detector = self._detector
        if detector is None or self.breaker.is_open:
            return True
        return detector.health.consecutive_failures >= self.breaker.failure_threshold

    def publish(self) -> None:
        metrics.DETECTOR_DEGRADED.labels(self.name).set(1.0 if self.degraded else 0.0)

    def poll(self) -> None:
        """One registry check (skipped while the breaker waits); loads and swaps when the alias moved."""
        if not self.breaker.allow():
            return
        try:
            version = self._source.resolve(self.name, self.alias)
            current = self._detector
            if current is None or current.version != version:
                self._swap(version)
        except Exception as exc:  # registry down, alias missing, bad artifact: all open the breaker
            self.breaker.record_failure()
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "model registry check failed",
                extra={"model": self.name, "alias": self.alias, "failures": self.breaker.failures, "error": str(exc)},
            )
        else:
            if self.breaker.is_open or self.last_error:
                log.info("model registry reachable again", extra={"model": self.name})
            self.breaker.record_success()
            self.last_error = None
        finally:
            self.publish()

    def _swap(self, version: str) -> None:
        try:
            model = self._source.load(self.name, version)  # includes the probe-score check
        except Exception:
            metrics.ML_MODEL_LOADS.labels(self.name, "failed").inc()
            raise
        previous = self._detector
        self._detector = MLDetector(model=model, model_name=self.name, model_version=version)
        # A served model lives until the next promotion: out of the API's full collections (no collection
        # first, which would pause requests while the watcher thread holds the GIL).
        freeze_long_lived(collect=False)
        metrics.ML_MODEL_LOADS.labels(self.name, "loaded").inc()
        if version.isdigit():
            metrics.ML_MODEL_VERSION.labels(self.name).set(int(version))
        log.info(
            "serving model version",
            extra={"model": self.name, "version": version, "previous": previous.version if previous else None},
        )

    def next_wait(self) -> float:
        if self.breaker.is_open:
            return max(_MIN_WAIT_SECONDS, min(self.reload_seconds, self.breaker.seconds_until_probe()))
        if self.breaker.failures or self._detector is None:
            # A first failure is confirmed (or cleared) quickly rather than a full reload period later.
            return min(self.reload_seconds, self.breaker.base_backoff)
        return self.reload_seconds


class ServedModels:
    """The `detectors=` callable of the detection loop, plus the thread that keeps every watcher current."""

    def __init__(self, watchers: Sequence[ModelWatcher]) -> None:
        self.watchers = tuple(watchers)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self) -> list[MLDetector | UnavailableModel]:
        detectors = [watcher.current() for watcher in self.watchers]
        for watcher in self.watchers:
            watcher.publish()  # scoring failures of the previous batch show up here
        return detectors

    def poll_all(self) -> None:
        for watcher in self.watchers:
            watcher.poll()

    def start(self, *, wait_seconds: float = _STARTUP_WAIT_SECONDS) -> None:
        """Start the watcher thread; wait (bounded) for a first load so a restart skips nothing."""
        self._thread = threading.Thread(target=self._run, name="ml-model-watcher", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline and not self._stop.is_set():
            if all(w.detector is not None or w.breaker.is_open for w in self.watchers):
                return
            time.sleep(0.05)

    def _run(self) -> None:
        due = dict.fromkeys(range(len(self.watchers)), 0.0)
        while not self._stop.is_set():
            now = time.monotonic()
            for index, watcher in enumerate(self.watchers):
                if now >= due[index]:
                    watcher.poll()
                    due[index] = time.monotonic() + watcher.next_wait()
            self._stop.wait(max(_MIN_WAIT_SECONDS, min(due.values()) - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def served_models(*, settings: Settings, source: ModelSource, names: Sequence[str] | None = None) -> ServedModels:
    """One watcher per served model name, with breakers configured from settings."""
    return ServedModels(
        [
            ModelWatcher(
                name=name,
                alias=settings.ml_serving_alias,
                source=source,
                breaker=CircuitBreaker(
                    failure_threshold=settings.ml_breaker_failures,
                    max_backoff=settings.ml_breaker_max_backoff_seconds,
                ),
                reload_seconds=settings.ml_reload_seconds,
            )
            for name in (names or settings.ml_model_names)
        ]
    )


def _serving_check(watcher: ModelWatcher) -> Callable[[], bool]:
    return lambda: not watcher.degraded


def run_ml_service(
    *,
    settings: Settings,
    group_id: str,
    stop: StopFlag,
    source: ModelSource,
    names: Sequence[str] | None = None,
    health: metrics.Health | None = None,
    thresholds: Thresholds | None = None,
) -> None:
    """`vigil run detect-ml`: consume tx.features as `group_id`, score with the served models, write anomalies."""
    from core.detection import run_detection_service

    health = health or metrics.Health()
    served = served_models(settings=settings, source=source, names=names)
    for watcher in served.watchers:
        health.add_check(f"model:{watcher.name}", _serving_check(watcher))
    served.start()
    try:
        run_detection_service(
            settings=settings,
            service="detect-ml",
            group_id=group_id,
            detectors=served,
            thresholds=thresholds or Thresholds(),
            stop=stop,
            health=health,
        )
    finally:
        served.stop()
