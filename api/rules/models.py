"""Views of rules and their versions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.common import TEXT_PATTERN, IsoDatetime
from core.contracts import Severity

RuleId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Expression = Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=TEXT_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
Description = Annotated[str, StringConstraints(max_length=4000, pattern=TEXT_PATTERN)]
TenantId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:@-]+$")]

_EXPR = 'count_10m >= 5 and amount < 2 and channel == "ecommerce"'


class RuleVersionView(BaseModel):
    """One immutable version of a rule."""

    rule_id: str
    version: int
    name: str
    description: str
    expression: str
    severity: Severity
    enabled: bool
    author: str
    created_at: datetime


class RuleView(BaseModel):
    """A rule and its current version."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rule_id": "card-testing",
                    "tenant_id": "acme",
                    "name": "Card testing burst",
                    "current_version": 2,
                    "enabled": True,
                    "created_at": "2026-11-20T09:00:00Z",
                    "updated_at": "2026-11-24T10:00:00Z",
                    "current": {
                        "rule_id": "card-testing",
                        "version": 2,
                        "name": "Card testing burst",
                        "description": "Many tiny online payments in a short time.",
                        "expression": _EXPR,
                        "severity": "critical",
                        "enabled": True,
                        "author": "alice",
                        "created_at": "2026-11-24T10:00:00Z",
                    },
                }
            ]
        }
    )

    rule_id: str
    tenant_id: str | None = Field(description="Null: the rule applies to every tenant (admin-managed).")
    name: str
    current_version: int
    enabled: bool
    created_at: datetime
    updated_at: datetime
    current: RuleVersionView


class RuleDetail(RuleView):
    versions: list[RuleVersionView] = Field(description="Every version, newest first.")


class RulePage(BaseModel):
    data: list[RuleView]


class RuleCreate(BaseModel):
    """A new rule; its expression is validated before anything is stored."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "rule_id": "card-testing",
                    "name": "Card testing burst",
                    "description": "Many tiny online payments in a short time.",
                    "expression": _EXPR,
                    "severity": "critical",
                }
            ]
        },
    )

    rule_id: RuleId | None = Field(None, description="Lower-case slug; generated when omitted.")
    tenant_id: TenantId | None = Field(
        None, description="Omit for the token's only tenant; admins omit it for an all-tenant rule."
    )
    name: Name
    description: Description = ""
    expression: Expression
    severity: Severity
    enabled: bool = True


class RuleVersionCreate(BaseModel):
    """The next version of a rule (versions are immutable; this adds one)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"expression": _EXPR.replace("5", "7"), "severity": "critical"}]},
    )

    name: Name | None = Field(None, description="Default: unchanged.")
    description: Description | None = Field(None, description="Default: unchanged.")
    expression: Expression
    severity: Severity
    enabled: bool | None = Field(None, description="Default: unchanged.")


class RuleToggle(BaseModel):
    """Switch a rule on or off without a new version."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": False}]})

    enabled: bool


class ExpressionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"expression": _EXPR}]})

    expression: Expression


class Issue(BaseModel):
    message: str
    line: int
    column: int
    snippet: str


class ValidationResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "valid": False,
                    "errors": [
                        {
                            "message": "unknown field 'amout'; did you mean 'amount'?",
                            "line": 1,
                            "column": 1,
                            "snippet": "amout > 100",
                        }
                    ],
                }
            ]
        }
    )

    valid: bool
    errors: list[Issue]


class BacktestIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"expression": _EXPR, "from": "2026-11-01T00:00:00Z", "to": "2026-11-24T00:00:00Z"}]
        },
    )

    expression: Expression
    tenant_id: TenantId | None = None
    since: IsoDatetime = Field(alias="from")
    until: IsoDatetime = Field(alias="to")


class BacktestResult(BaseModel):
    evaluated: int
    hits: int
    hits_per_day: dict[str, int]
    labelled_hits: int
    true_positives: int
    precision: float | None
    recall: float | None
    sample_transaction_ids: list[str]
