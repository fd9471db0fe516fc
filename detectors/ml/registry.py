"""Models in the MLflow registry: log + register a training outcome, move aliases, load a version.

Conventions shared with the API (`/v1/models`), so both move the same aliases:
- `challenger` points at the newest trained version, `champion` at the one served;
- MLflow keeps no history of an alias, so each promotion pushes the alias's previous
  version onto the model tag `vigil.alias_history.<alias>` (JSON list) and rollback pops it;
- every version carries `vigil.kind` and `vigil.training_key` (data + settings fingerprint):
  re-running the same training finds its version instead of registering a duplicate.

Everything goes through an explicit `MlflowClient(tracking_uri)`, never MLflow's
process-global URI, so one process can talk to two servers (tests) safely.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from detectors.ml.errors import ModelUnavailableError, RegistryError
from detectors.ml.model import FittedModel
from detectors.ml.scorers import ModelKind
from detectors.ml.training import TrainingOutcome

CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
ALIAS_HISTORY_TAG: Final = "vigil.alias_history."
KIND_TAG: Final = "vigil.kind"
KEY_TAG: Final = "vigil.training_key"
_HISTORY_KEEP: Final = 20
_READY_TIMEOUT_SECONDS: Final = 120.0


def fail_fast_http(*, timeout_seconds: int = 30) -> None:
    """Make MLflow HTTP calls fail in seconds instead of retrying for minutes (serving processes).

    MLflow reads these per request from the environment; operators' own values win.
    A serving loop has its own backoff (the circuit breaker), so client retries only delay
    noticing an outage.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_seconds))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@dataclass(frozen=True, slots=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    created: bool  # False: an identical training was already registered


@dataclass(frozen=True, slots=True)
class AliasChange:
    name: str
    alias: str
    previous_version: str | None
    version: str


@dataclass(frozen=True, slots=True)
class VersionSummary:
    version: str
    created_at: datetime | None
    kind: str | None
    aliases: tuple[str, ...]
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelSummary:
    name: str
    aliases: dict[str, str]
    versions: tuple[VersionSummary, ...]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


class ModelRegistry:
    """The MLflow model registry as Vigil uses it."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    # --- registering ------------------------------------------------------------------------

    def register(
        self, *, name: str, outcome: TrainingOutcome, experiment: str, alias: str | None = CHALLENGER
    ) -> RegisteredVersion:
        """Log the outcome as an MLflow run, register it as a new version of `name`, point `alias` at it."""
        self._ensure_model(name)
        existing = self.find_version(name, outcome.fingerprint)
        version = existing or self._log_and_register(name=name, outcome=outcome, experiment=experiment)
        kind = outcome.model.kind.value
        self.client.set_registered_model_tag(name, KIND_TAG, kind)
        if alias is not None:
            self.client.set_registered_model_alias(name, alias, version.version)
        return version

    def _ensure_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name, description="Vigil fraud model (vigil train).")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    def find_version(self, name: str, fingerprint: str) -> RegisteredVersion | None:
        """The version of `name` trained from exactly this data and these settings, if any."""
        from mlflow.exceptions import MlflowException

        try:
            versions = self.client.search_model_versions(f"name='{_quote(name)}'")
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        for version in versions:
            if (version.tags or {}).get(KEY_TAG) == fingerprint:
                return RegisteredVersion(name=name, version=str(version.version), run_id=version.run_id, created=False)
        return None

    def set_alias(self, *, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, version)

    def _experiment_id(self, experiment: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(experiment))
        except MlflowException as exc:  # another trainer created it a moment ago
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            again = self.client.get_experiment_by_name(experiment)
            return str(again.experiment_id)

    def _log_and_register(self, *, name: str, outcome: TrainingOutcome, experiment: str) -> RegisteredVersion:
        import mlflow.pyfunc
        import numpy as np
        import pyod
        import sklearn
        from mlflow.entities import Metric, Param
        from mlflow.models import ModelSignature
        from mlflow.types import ColSpec, Schema

        from detectors.ml.pyfunc import VigilPyfuncModel

        model = outcome.model
        run = self.client.create_run(
            self._experiment_id(experiment),
            run_name=f"{name}-{model.kind.value}-{outcome.cutoff:%Y%m%dT%H%M}",
            tags={KIND_TAG: model.kind.value, KEY_TAG: outcome.fingerprint, "vigil.model_name": name},
        )
        run_id = run.info.run_id
        try:
            now_ms = int(time.time() * 1000)
            metrics = {**(outcome.quality.as_metrics() if outcome.quality else {}), **outcome.extra}
            metrics.update({f"count_{key}": float(value) for key, value in outcome.counts.items()})
            self.client.log_batch(
                run_id,
                metrics=[Metric(key, float(value), now_ms, 0) for key, value in metrics.items()],
                params=[Param(key, value) for key, value in outcome.params.items()],
            )
            self.client.log_dict(
                run_id,
                {
                    "features": list(model.feature_names),
                    "importance": dict(zip(model.feature_names, model.importance.round(6).tolist(), strict=True)),
                    "calibration": {
                        "typical": model.calibration.typical,
                        "warning": model.calibration.warning,
                        "critical": model.calibration.critical,
                    },
                    "counts": outcome.counts,
                },
                "vigil_model.json",
            )
            with tempfile.TemporaryDirectory(prefix="vigil-model-") as scratch:
                path = Path(scratch) / "model"
                signature = ModelSignature(
                    inputs=Schema([ColSpec("double", name) for name in model.feature_names]),
                    outputs=Schema([ColSpec("double")]),
                )
                mlflow.pyfunc.save_model(
                    path=str(path),
                    python_model=VigilPyfuncModel(model),
                    signature=signature,
                    # One typical row: MLflow stores it and checks the model predicts it at save time.
                    input_example={
                        feature: [float(value)]
                        for feature, value in zip(model.feature_names, np.nan_to_num(model.baseline), strict=True)
                    },
                    # Explicit requirements: inferring them would import-scan in a subprocess for minutes.
                    pip_requirements=[
                        f"mlflow=={mlflow.__version__}",
                        f"scikit-learn=={sklearn.__version__}",
                        f"pyod=={pyod.__version__}",
                        f"numpy=={np.__version__}",
                    ],
                )
                self.client.log_artifacts(run_id, str(path), "model")
            created = self.client.create_model_version(
                name,
                source=f"runs:/{run_id}/model",
                run_id=run_id,
                tags={KIND_TAG: model.kind.value, KEY_TAG: outcome.fingerprint},
                description=f"{model.kind.value} on {outcome.counts.get('train_rows', 0)} rows before "
                f"{outcome.cutoff.isoformat()}",
            )
            self._wait_ready(name, str(created.version))
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED")
        return RegisteredVersion(name=name, version=str(created.version), run_id=run_id, created=True)

    def _wait_ready(self, name: str, version: str) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
        while True:
            status = self.client.get_model_version(name, version).status
            if status == "READY":
                return
            if status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
                raise RegistryError(f"version {version} of {name!r} did not become ready ({status})")
            time.sleep(0.2)

    # --- aliases ------------------------------------------------------------------------------

    def resolve(self, name: str, alias: str) -> str:
        """The version `alias` points at; `RegistryError` when there is none."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise RegistryError(f"{name!r} has no version aliased {alias!r}") from None
            raise

    def promote(
        self, *, name: str, version: str | None = None, alias: str = CHAMPION, source_alias: str = CHALLENGER
    ) -> AliasChange:
        """Point `alias` at `version` (default: the `source_alias` version), remembering the previous one."""
        model = self._model(name)
        target = version if version is not None else self.resolve(name, source_alias)
        self._version(name, target)
        previous = (model.aliases or {}).get(alias)
        previous = str(previous) if previous is not None else None
        if previous == target:
            return AliasChange(name=name, alias=alias, previous_version=previous, version=target)
        self.client.set_registered_model_alias(name, alias, target)
        if previous is not None:
            history = _history(model, alias)
            history.append(previous)
            self.client.set_registered_model_tag(name, ALIAS_HISTORY_TAG + alias, json.dumps(history[-_HISTORY_KEEP:]))
        return AliasChange(name=name, alias=alias, previous_version=previous, version=target)

    def rollback(self, *, name: str, alias: str = CHAMPION) -> AliasChange:
        """Point `alias` back at the version it had before the last promotion."""
        model = self._model(name)
        history = _history(model, alias)
        if not history:
            raise RegistryError(f"alias {alias!r} of {name!r} has no earlier version to roll back to")
        target = history.pop()
        current = (model.aliases or {}).get(alias)
        self.client.set_registered_model_alias(name, alias, target)
        self.client.set_registered_model_tag(name, ALIAS_HISTORY_TAG + alias, json.dumps(history))
        return AliasChange(
            name=name, alias=alias, previous_version=str(current) if current is not None else None, version=target
        )

    def kind_of(self, name: str) -> ModelKind | None:
        """The kind last registered under `name`, or None for an unknown model."""
        from mlflow.exceptions import MlflowException

        try:
            tag = (self.client.get_registered_model(name).tags or {}).get(KIND_TAG)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return ModelKind(tag) if isinstance(tag, str) and tag in set(ModelKind) else None

    def list_models(self, names: Sequence[str] | None = None) -> list[ModelSummary]:
        """Registered models (all, or `names`) with their versions, aliases and held-out metrics."""
        if names:
            models = [self._model(name) for name in names]
        else:
            models = list(self.client.search_registered_models(max_results=200, order_by=["name ASC"]))
        summaries = []
        for model in models:
            aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
            by_version: dict[str, list[str]] = {}
            for alias, version in aliases.items():
                by_version.setdefault(version, []).append(alias)
            versions = sorted(
                self.client.search_model_versions(f"name='{_quote(model.name)}'"),
                key=lambda mv: int(mv.version),
                reverse=True,
            )
            summaries.append(
                ModelSummary(
                    name=model.name,
                    aliases=aliases,
                    versions=tuple(
                        VersionSummary(
                            version=str(mv.version),
                            created_at=datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC)
                            if mv.creation_timestamp
                            else None,
                            kind=(mv.tags or {}).get(KIND_TAG),
                            aliases=tuple(sorted(by_version.get(str(mv.version), []))),
                            metrics=self._metrics(mv.run_id) if index < 10 else {},
                        )
                        for index, mv in enumerate(versions)
                    ),
                )
            )
        return summaries

    def _metrics(self, run_id: str | None) -> dict[str, float]:
        from mlflow.exceptions import MlflowException

        if not run_id:
            return {}
        try:
            return {key: float(value) for key, value in self.client.get_run(run_id).data.metrics.items()}
        except MlflowException:
            return {}

    def _model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise RegistryError(f"no registered model {name!r}") from None
            raise

    def _version(self, name: str, version: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(name, version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise RegistryError(f"no version {version!r} of {name!r}") from None
            raise

    # --- loading ------------------------------------------------------------------------------

    def load(self, name: str, version: str) -> FittedModel:
        """Download and unpickle one version; it must reproduce its training-time probe scores."""
        import mlflow.artifacts
        import mlflow.pyfunc

        source = self._version(name, version).source
        with tempfile.TemporaryDirectory(prefix="vigil-serve-") as scratch:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=scratch, tracking_uri=self.tracking_uri
            )
            loaded = mlflow.pyfunc.load_model(path)
        try:
            model = loaded.unwrap_python_model().model
        except AttributeError as exc:
            raise ModelUnavailableError(f"version {version} of {name!r} is not a Vigil model") from exc
        if not isinstance(model, FittedModel):
            raise ModelUnavailableError(f"version {version} of {name!r} is not a Vigil model")
        model.check()
        return model


def _history(model: Any, alias: str) -> list[str]:
    raw = (model.tags or {}).get(ALIAS_HISTORY_TAG + alias)
    try:
        parsed = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [str(item) for item in parsed] if isinstance(parsed, list) else []
