"""The JWT-protected HTTP API (FastAPI): analysts, API clients and the dashboard.

Public surface:
- `create_app(settings, *, ports=ApiPorts(...))` builds the application (nothing at import time);
- `ApiPorts` and the Protocols it holds (`RuleEngine`, `ModelRegistry`, `Scorer`) with their result
  types, which the composition root adapts other packages to;
- `MlflowModelRegistry`, a `ModelRegistry` over MLflow;
- principal management for the CLI: `create_principal`, `list_principals`, `set_disabled`,
  `new_client_secret`; `Role`, `Principal`, `ROLE_PERMISSIONS`;
- `ApiError`, the base of the errors this package raises.
"""

from api.app import create_app
from api.auth.passwords import new_client_secret
from api.auth.service import PrincipalRecord, create_principal, get_principal, list_principals, set_disabled
from api.errors import ApiError
from api.permissions import ROLE_PERMISSIONS, Permission, Principal, Role
from api.ports import (
    AliasChange,
    ApiPorts,
    BacktestReport,
    DetectorVerdict,
    ModelInfo,
    ModelNotFoundError,
    ModelRegistry,
    ModelVersionInfo,
    PortUnavailableError,
    RuleEngine,
    RuleIssue,
    ScoreOutcome,
    Scorer,
)
from api.registry.mlflow_registry import MlflowModelRegistry

__all__ = [
    "ROLE_PERMISSIONS",
    "AliasChange",
    "ApiError",
    "ApiPorts",
    "BacktestReport",
    "DetectorVerdict",
    "MlflowModelRegistry",
    "ModelInfo",
    "ModelNotFoundError",
    "ModelRegistry",
    "ModelVersionInfo",
    "Permission",
    "PortUnavailableError",
    "Principal",
    "PrincipalRecord",
    "Role",
    "RuleEngine",
    "RuleIssue",
    "ScoreOutcome",
    "Scorer",
    "create_app",
    "create_principal",
    "get_principal",
    "list_principals",
    "new_client_secret",
    "set_disabled",
]
