"""`/v1/rules`: list, create, version, enable/disable, validate and backtest rules."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.common import TenantQuery, in_range
from api.deps import CanReadRules, CanWriteRules, Ctx, ReadDb, WriteDb
from api.errors import ForbiddenError, NotFoundError, UnprocessableError, error_responses
from api.permissions import Principal
from api.rules import service
from api.rules.models import (
    BacktestIn,
    BacktestResult,
    ExpressionIn,
    Issue,
    RuleCreate,
    RuleDetail,
    RulePage,
    RuleToggle,
    RuleVersionCreate,
    RuleVersionView,
    RuleView,
    ValidationResult,
)

router = APIRouter(tags=["rules"])
_RuleId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")]


def _check_expression(ctx: Ctx, expression: str) -> None:
    issues = ctx.ports.require_rule_engine().validate(expression)
    if issues:
        raise UnprocessableError(
            "the rule expression is invalid",
            code="invalid_expression",
            details=[
                {
                    "loc": ["body", "expression"],
                    "message": issue.message,
                    "type": "rule_syntax",
                    "line": issue.line,
                    "column": issue.column,
                    "snippet": issue.snippet,
                }
                for issue in issues
            ],
        )


def _require_writable(principal: Principal, tenant_id: str | None) -> None:
    if tenant_id is None and not principal.is_admin:
        raise ForbiddenError("only admins change rules that apply to every tenant")
    if tenant_id is not None and not principal.sees_tenant(tenant_id):
        raise ForbiddenError(f"this token has no access to tenant {tenant_id!r}")


def _detail(connection: ReadDb, rule: dict[str, object]) -> RuleDetail:
    versions = service.versions_of(connection=connection, rule_id=str(rule["rule_id"]))
    return RuleDetail.model_validate({**rule, "versions": versions})


@router.get(
    "/v1/rules",
    summary="List rules",
    response_model=RulePage,
    responses=error_responses(401, 403, 422, 429, 503),
)
def list_rules(
    principal: CanReadRules,
    connection: ReadDb,
    tenant_id: TenantQuery = None,
    enabled: Annotated[bool | None, Query(description="Only enabled (true) or disabled (false) rules.")] = None,
) -> RulePage:
    """Rules of the token's tenants and all-tenant rules, with their current version."""
    if tenant_id is not None:
        principal.tenant_scope(tenant_id)
    rows = service.list_rules(
        connection=connection, tenants=principal.tenant_scope(), tenant_id=tenant_id, enabled=enabled
    )
    return RulePage(data=[RuleView.model_validate(r) for r in rows])


@router.post(
    "/v1/rules",
    summary="Create a rule",
    status_code=201,
    response_model=RuleDetail,
    responses=error_responses(401, 403, 409, 413, 422, 429, 503),
)
def create_rule(ctx: Ctx, principal: CanWriteRules, connection: WriteDb, rule: RuleCreate) -> RuleDetail:
    """The expression is validated by the rule engine first (422 with line and column on error)."""
    tenant_id = rule.tenant_id
    if tenant_id is None and not principal.is_admin:
        tenant_id = principal.single_tenant(None)
    _require_writable(principal, tenant_id)
    _check_expression(ctx, rule.expression)
    rule_id = service.create_rule(
        connection=connection,
        rule_id=rule.rule_id,
        tenant_id=tenant_id,
        name=rule.name,
        description=rule.description,
        expression=rule.expression,
        severity=rule.severity.value,
        enabled=rule.enabled,
        author=principal.principal_id,
    )
    created = service.get_rule(connection=connection, tenants=None, rule_id=rule_id)
    assert created is not None  # inserted in this transaction
    return _detail(connection, created)


@router.get(
    "/v1/rules/{rule_id}",
    summary="One rule with every version",
    response_model=RuleDetail,
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
def get_rule(principal: CanReadRules, connection: ReadDb, rule_id: _RuleId) -> RuleDetail:
    rule = service.get_rule(connection=connection, tenants=principal.tenant_scope(), rule_id=rule_id)
    if rule is None:
        raise NotFoundError("no such rule")
    return _detail(connection, rule)


@router.patch(
    "/v1/rules/{rule_id}",
    summary="Enable or disable a rule",
    response_model=RuleDetail,
    responses=error_responses(401, 403, 404, 413, 422, 429, 503),
)
def toggle_rule(principal: CanWriteRules, connection: WriteDb, rule_id: _RuleId, change: RuleToggle) -> RuleDetail:
    """Rules are never deleted (their versions explain past anomalies); disable them instead."""
    rule = service.get_rule(connection=connection, tenants=principal.tenant_scope(), rule_id=rule_id, for_update=True)
    if rule is None:
        raise NotFoundError("no such rule")
    _require_writable(principal, rule["tenant_id"])
    service.set_enabled(connection=connection, current=rule, enabled=change.enabled, actor=principal.principal_id)
    updated = service.get_rule(connection=connection, tenants=None, rule_id=rule_id)
    assert updated is not None
    return _detail(connection, updated)


@router.post(
    "/v1/rules/{rule_id}/versions",
    summary="Publish a new version of a rule",
    status_code=201,
    response_model=RuleDetail,
    responses=error_responses(401, 403, 404, 413, 422, 429, 503),
)
def publish_version(
    ctx: Ctx, principal: CanWriteRules, connection: WriteDb, rule_id: _RuleId, version: RuleVersionCreate
) -> RuleDetail:
    """Versions are immutable: this adds version N+1 and makes it current."""
    rule = service.get_rule(connection=connection, tenants=principal.tenant_scope(), rule_id=rule_id, for_update=True)
    if rule is None:
        raise NotFoundError("no such rule")
    _require_writable(principal, rule["tenant_id"])
    _check_expression(ctx, version.expression)
    service.publish_version(
        connection=connection,
        current=rule,
        name=version.name,
        description=version.description,
        expression=version.expression,
        severity=version.severity.value,
        enabled=version.enabled,
        author=principal.principal_id,
    )
    updated = service.get_rule(connection=connection, tenants=None, rule_id=rule_id)
    assert updated is not None
    return _detail(connection, updated)


@router.get(
    "/v1/rules/{rule_id}/versions/{version}",
    summary="One version of a rule",
    response_model=RuleVersionView,
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
def get_version(
    principal: CanReadRules,
    connection: ReadDb,
    rule_id: _RuleId,
    version: Annotated[int, Path(ge=1, le=2_147_483_647)],
) -> RuleVersionView:
    rule = service.get_rule(connection=connection, tenants=principal.tenant_scope(), rule_id=rule_id)
    if rule is None:
        raise NotFoundError("no such rule")
    for row in service.versions_of(connection=connection, rule_id=rule_id):
        if row["version"] == version:
            return RuleVersionView.model_validate(row)
    raise NotFoundError("no such version")


@router.post(
    "/v1/rules:validate",
    summary="Check a rule expression",
    response_model=ValidationResult,
    responses=error_responses(401, 403, 413, 422, 429, 503),
)
def validate_expression(ctx: Ctx, principal: CanWriteRules, body: ExpressionIn) -> ValidationResult:
    """Parses and type-checks without saving; errors carry 1-based line and column."""
    del principal
    issues = ctx.ports.require_rule_engine().validate(body.expression)
    return ValidationResult(
        valid=not issues,
        errors=[Issue(message=i.message, line=i.line, column=i.column, snippet=i.snippet) for i in issues],
    )


@router.post(
    "/v1/rules:backtest",
    summary="Backtest a rule expression on stored history",
    response_model=BacktestResult,
    responses=error_responses(401, 403, 413, 422, 429, 503),
)
def backtest(ctx: Ctx, principal: CanWriteRules, body: BacktestIn) -> BacktestResult:
    """Evaluates a draft expression over stored transactions in [from, to) with the same evaluator
    the detector uses; precision and recall use the labels available."""
    tenants = principal.tenant_scope(body.tenant_id)
    tenant_id = (
        body.tenant_id if body.tenant_id is not None else (tenants[0] if tenants and len(tenants) == 1 else None)
    )
    if tenant_id is None and not principal.is_admin:
        principal.single_tenant(None)
    engine = ctx.ports.require_rule_engine()
    _check_expression(ctx, body.expression)
    report = engine.backtest(
        expression=body.expression,
        tenant_id=tenant_id,
        start=in_range(body.since),
        end=in_range(body.until),
    )
    return BacktestResult(
        evaluated=report.evaluated,
        hits=report.hits,
        hits_per_day=dict(report.hits_per_day),
        labelled_hits=report.labelled_hits,
        true_positives=report.true_positives,
        precision=report.precision,
        recall=report.recall,
        sample_transaction_ids=list(report.sample_transaction_ids),
    )
