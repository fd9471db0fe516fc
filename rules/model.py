"""Rule records as the service functions accept and return them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from core.contracts import Severity

RULE_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{0,63}$"
RULE_ID_RE: Final = re.compile(RULE_ID_PATTERN)

RuleId = Annotated[str, StringConstraints(pattern=RULE_ID_PATTERN)]
RuleName = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class RuleDraft(BaseModel):
    """A rule as an analyst writes it (packs, `vigil rules backtest --rule FILE`, create)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule_id: RuleId = Field(alias="id", description="Stable id, lower case: letters, digits, . _ -")
    name: RuleName
    expression: Annotated[str, StringConstraints(min_length=1, max_length=20_000, strip_whitespace=True)]
    severity: Severity = Severity.WARNING
    description: str = ""
    tenant_id: str | None = Field(None, description="None = applies to every tenant.")
    enabled: bool = True


class RuleVersionView(BaseModel):
    """One immutable version of a rule."""

    model_config = ConfigDict(frozen=True)

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
    """A rule with the content of its current version."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    tenant_id: str | None
    name: str
    description: str
    expression: str
    severity: Severity
    enabled: bool
    current_version: int
    author: str
    created_at: datetime
    updated_at: datetime


class ActiveRule(BaseModel):
    """What the detector needs of an enabled rule: its current version's content and scope."""

    model_config = ConfigDict(frozen=True)

    rule_id: str
    version: int
    name: str
    description: str
    expression: str
    severity: Severity
    tenant_id: str | None = None
