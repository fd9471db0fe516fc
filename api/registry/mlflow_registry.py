"""`ModelRegistry` over the MLflow model registry.

Aliases (e.g. `@champion`) are what detectors serve. MLflow keeps no history of
an alias, so each promotion pushes the alias's previous version onto a model
tag (`vigil.alias_history.<alias>`, a JSON list); rollback pops it. The history
lives in MLflow itself, so every API replica and the CLI agree on it.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Final

from api.ports import AliasChange, ModelInfo, ModelNotFoundError, ModelVersionInfo

log = logging.getLogger(__name__)

_HISTORY_TAG: Final = "vigil.alias_history."
_HISTORY_KEEP: Final = 20
_VERSIONS_WITH_METRICS: Final = 10


class MlflowModelRegistry:
    def __init__(self, tracking_uri: str) -> None:
        self._tracking_uri = tracking_uri
        self._client: Any = None

    def warm(self) -> None:
        """Import MLflow and build the client ahead of the first request (the import takes seconds)."""
        try:
            self._mlflow()
        except Exception as exc:  # the first real call will report it; warming is best effort
            log.warning("could not prepare the MLflow client", extra={"error": str(exc)})

    def _mlflow(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient  # heavy import: only when the registry is used

            self._client = MlflowClient(tracking_uri=self._tracking_uri, registry_uri=self._tracking_uri)
        return self._client

    def list_models(self) -> list[ModelInfo]:
        client = self._mlflow()
        models = []
        for model in client.search_registered_models(max_results=200, order_by=["name ASC"]):
            aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
            by_version: dict[str, list[str]] = {}
            for alias, version in aliases.items():
                by_version.setdefault(version, []).append(alias)
            versions = sorted(
                client.search_model_versions(f"name='{_quote(model.name)}'"),
                key=lambda mv: int(mv.version),
                reverse=True,
            )
            infos = []
            for index, mv in enumerate(versions):
                metrics: dict[str, float] = {}
                if mv.run_id and index < _VERSIONS_WITH_METRICS:
                    metrics = _run_metrics(client, mv.run_id)
                infos.append(
                    ModelVersionInfo(
                        version=str(mv.version),
                        created_at=_timestamp(mv.creation_timestamp),
                        run_id=mv.run_id or None,
                        status=mv.status,
                        aliases=sorted(by_version.get(str(mv.version), [])),
                        metrics=metrics,
                    )
                )
            models.append(
                ModelInfo(name=model.name, description=model.description or "", aliases=aliases, versions=infos)
            )
        return models

    def promote(self, *, name: str, version: str, alias: str) -> AliasChange:
        client = self._mlflow()
        model = self._model(name)
        self._version(name, version)
        previous = (model.aliases or {}).get(alias)
        previous = str(previous) if previous is not None else None
        _set_alias(client, name, alias, version)
        if previous is not None and previous != version:
            history = _history(model, alias)
            history.append(previous)
            client.set_registered_model_tag(name, _HISTORY_TAG + alias, json.dumps(history[-_HISTORY_KEEP:]))
        return AliasChange(name=name, alias=alias, previous_version=previous, version=version)

    def rollback(self, *, name: str, alias: str) -> AliasChange:
        client = self._mlflow()
        model = self._model(name)
        history = _history(model, alias)
        if not history:
            raise ModelNotFoundError(f"alias {alias!r} of {name!r} has no earlier version to roll back to")
        target = history.pop()
        current = (model.aliases or {}).get(alias)
        _set_alias(client, name, alias, target)
        client.set_registered_model_tag(name, _HISTORY_TAG + alias, json.dumps(history))
        return AliasChange(
            name=name, alias=alias, previous_version=str(current) if current is not None else None, version=target
        )

    def _model(self, name: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self._mlflow().get_registered_model(name)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise ModelNotFoundError(f"no registered model {name!r}") from None
            raise

    def _version(self, name: str, version: str) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self._mlflow().get_model_version(name, version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise ModelNotFoundError(f"no version {version!r} of {name!r}") from None
            raise


def _set_alias(client: Any, name: str, alias: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.set_registered_model_alias(name, alias, version)
    except MlflowException as exc:
        if exc.error_code == "INVALID_PARAMETER_VALUE":  # e.g. reserved aliases such as `latest`
            raise ValueError(exc.message) from None
        raise


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _history(model: Any, alias: str) -> list[str]:
    raw = (model.tags or {}).get(_HISTORY_TAG + alias)
    try:
        parsed = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [str(item) for item in parsed] if isinstance(parsed, list) else []


def _timestamp(millis: int | None) -> datetime | None:
    return datetime.fromtimestamp(millis / 1000, tz=UTC) if millis else None


def _run_metrics(client: Any, run_id: str) -> dict[str, float]:
    from mlflow.exceptions import MlflowException

    try:
        return {key: float(value) for key, value in client.get_run(run_id).data.metrics.items()}
    except MlflowException:
        return {}
