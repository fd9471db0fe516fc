"""Capabilities other packages provide, as Protocols the composition root fills in.

The API never imports `rules/`, `detectors/` or `features/`: `vigil run api`
adapts them to these Protocols and passes them in `ApiPorts`. A port left as
None makes its endpoints answer 503 `port_unavailable` with a clear message.
Return types are the API's own dataclasses, so adapters translate at the seam.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from api.errors import UnavailableError
from api.system.service import ConsumerSpec
from core.contracts import Reason, Transaction


class PortUnavailableError(UnavailableError):
    """The capability is not wired into this deployment."""

    code = "port_unavailable"


# --- rules ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleIssue:
    """One problem in a rule expression, positioned for an editor (1-based line and column)."""

    message: str
    line: int
    column: int
    snippet: str = ""


@dataclass(frozen=True, slots=True)
class BacktestReport:
    evaluated: int
    hits: int
    hits_per_day: dict[str, int] = field(default_factory=dict)
    labelled_hits: int = 0
    true_positives: int = 0
    precision: float | None = None
    recall: float | None = None
    sample_transaction_ids: list[str] = field(default_factory=list)


class RuleEngine(Protocol):
    """The rules package: parse/type-check expressions and replay them over history."""

    def validate(self, expression: str) -> list[RuleIssue]:
        """Problems in `expression`; empty when it can be saved."""
        ...

    def backtest(self, *, expression: str, tenant_id: str | None, start: datetime, end: datetime) -> BacktestReport:
        """Evaluate a draft expression over stored transactions in [start, end)."""
        ...


# --- models -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelVersionInfo:
    version: str
    created_at: datetime | None
    run_id: str | None
    status: str | None
    aliases: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    description: str
    aliases: dict[str, str]
    versions: list[ModelVersionInfo]


@dataclass(frozen=True, slots=True)
class AliasChange:
    name: str
    alias: str
    previous_version: str | None
    version: str


class ModelRegistry(Protocol):
    """Registered models and their serving aliases (MLflow)."""

    def list_models(self) -> list[ModelInfo]: ...

    def promote(self, *, name: str, version: str, alias: str) -> AliasChange:
        """Point `alias` at `version`, remembering the previous target for rollback."""
        ...

    def rollback(self, *, name: str, alias: str) -> AliasChange:
        """Point `alias` back at the version it served before the last promotion."""
        ...


class ModelNotFoundError(LookupError):
    """Raised by a registry for an unknown model, version or alias history."""


# --- scoring ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DetectorVerdict:
    family: str
    name: str
    version: str
    score: float | None  # 0-100, None = could not judge (e.g. insufficient history)
    severity: str | None = None
    reasons: list[Reason] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ScoreOutcome:
    score: float  # 0-100, the combined verdict
    verdicts: list[DetectorVerdict]
    degraded: list[str] = field(default_factory=list)  # detectors that fell back or were skipped


class Scorer(Protocol):
    """Scores one transaction now, with current features and every detector family."""

    def score(self, transaction: Transaction) -> ScoreOutcome:
        """May block on I/O: the API calls it on a worker thread."""
        ...

    def score_now(self, transaction: Transaction) -> ScoreOutcome | None:
        """The score if it can be had without blocking I/O (the API calls it on its event loop), else None."""
        ...


@dataclass(frozen=True, slots=True)
class ApiPorts:
    """What the composition root plugs in; None = not available in this deployment."""

    rule_engine: RuleEngine | None = None
    model_registry: ModelRegistry | None = None
    scorer: Scorer | None = None
    # The stream services' consumer groups, for consumer lag in `GET /v1/system/status`.
    consumers: tuple[ConsumerSpec, ...] = ()

    def require_rule_engine(self) -> RuleEngine:
        if self.rule_engine is None:
            raise PortUnavailableError("rule validation and backtests are not wired into this API process")
        return self.rule_engine

    def require_model_registry(self) -> ModelRegistry:
        if self.model_registry is None:
            raise PortUnavailableError("the model registry is not wired into this API process")
        return self.model_registry

    def require_scorer(self) -> Scorer:
        if self.scorer is None:
            raise PortUnavailableError("synchronous scoring is not wired into this API process")
        return self.scorer
