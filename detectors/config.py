"""Statistical thresholds: a default from settings, overridable per tenant and entity type.

`threshold`/`critical` are the mean/σ z-score's bands; robust z and IQR use fixed, published cutoffs
(detectors/statistical.py). `min_history` applies to all of them.

File format (YAML, `VIGIL_STATISTICAL_CONFIG_FILE`):

    default: {threshold: 3.5, critical: 7.0, min_history: 10}
    tenants:
      acme:
        account: {threshold: 3.0}
        merchant: {threshold: 3.5, critical: 6.0}
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.contracts import EntityType
from core.settings import Settings
from detectors.errors import DetectorConfigError

# Fewer than 10 past amounts: σ is known to no better than ±24 % (1/sqrt(2(n-1))) and the quartiles
# are single order statistics; judging earlier flagged ~1 % more legitimate payments (docs/detectors.md).
MIN_HISTORY_DEFAULT: Final = 10


class Band(BaseModel):
    """σ levels for one scope; unset fields inherit from the enclosing scope."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float | None = Field(None, ge=1.5, le=4.0)
    critical: float | None = Field(None, ge=2.0, le=20.0)
    min_history: int | None = Field(None, ge=2, le=1000)


class ResolvedBand(BaseModel):
    model_config = ConfigDict(frozen=True)

    threshold: float
    critical: float
    min_history: int

    @model_validator(mode="after")
    def _ordered(self) -> ResolvedBand:
        if self.critical <= self.threshold:
            raise ValueError(f"critical ({self.critical}σ) must be above threshold ({self.threshold}σ)")
        return self


class StatisticalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Band = Band()
    tenants: dict[str, dict[EntityType, Band]] = Field(default_factory=dict)

    def resolve(self, *, settings: Settings, tenant_id: str, entity: EntityType) -> ResolvedBand:
        """The band for one tenant and entity type: tenant/entity > file default > settings."""
        layers = [self.tenants.get(tenant_id, {}).get(entity), self.default]
        fields: dict[str, float | int] = {
            "threshold": settings.zscore_threshold,
            "critical": settings.zscore_critical,
            "min_history": MIN_HISTORY_DEFAULT,
        }
        for layer in reversed([layer for layer in layers if layer is not None]):
            fields.update(layer.model_dump(exclude_none=True))
        return ResolvedBand.model_validate(fields)


def load_statistical_config(path: Path | None) -> StatisticalConfig:
    """Read and validate the thresholds file; no file means settings defaults everywhere."""
    if path is None:
        return StatisticalConfig()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return StatisticalConfig.model_validate(raw)
    except OSError as exc:
        raise DetectorConfigError(f"cannot read {path}: {exc.strerror}") from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise DetectorConfigError(f"{path}: {exc}") from None
