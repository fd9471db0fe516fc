"""Request dependencies: context, database connections, the current principal and permission checks.

All 401/403 decisions are made here (tenant checks live on `Principal`), so a
route declares what it needs with a typed alias, e.g. `principal: CanReadCases`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Connection

from api.auth.errors import InvalidTokenError
from api.context import AppContext
from api.errors import ForbiddenError, RateLimitedError, UnauthorizedError
from api.permissions import Permission, Principal


async def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.vigil
    return context


Ctx = Annotated[AppContext, Depends(get_context)]


def _read(ctx: Ctx) -> Iterator[Connection]:
    with ctx.engine.connect() as connection:
        yield connection


def _write(ctx: Ctx) -> Iterator[Connection]:
    # Committed when the route returns, before the response is sent: a 2xx means durable.
    with ctx.engine.begin() as connection:
        yield connection


ReadDb = Annotated[Connection, Depends(_read, scope="function")]
WriteDb = Annotated[Connection, Depends(_write, scope="function")]

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="Access token from `POST /v1/auth/token` or the configured OIDC provider.",
)


async def current_principal(
    request: Request,
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Verify the bearer token, resolve the principal, and apply the per-client rate limit.

    Async on purpose: verification is CPU-only (~0.1 ms) and the principal usually comes from
    the cache, so hopping to a worker thread would cost more than the work.
    """
    if credentials is None:
        raise UnauthorizedError()
    token = ctx.verifier.verify(credentials.credentials)
    if token.issuer_kind == "external":
        principal = ctx.verifier.external_principal(token)
    else:
        found, record = ctx.principals.cached(token.subject)
        if not found:
            record = await run_in_threadpool(ctx.principals.get, token.subject)
        if record is None or record.disabled:
            raise InvalidTokenError("the token's principal is unknown or disabled")
        principal = record.as_principal()
    retry_after = ctx.limiter.take(principal.principal_id)
    if retry_after is not None:
        raise RateLimitedError(retry_after)
    request.state.principal_id = principal.principal_id
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(permission: Permission) -> Callable[..., Coroutine[None, None, Principal]]:
    """A dependency returning the principal if it holds `permission`, else 403."""

    async def dependency(principal: CurrentPrincipal) -> Principal:
        if not principal.can(permission):
            raise ForbiddenError(f"this token's roles do not grant {permission.value}")
        return principal

    dependency.__name__ = f"require_{permission.name.lower()}"
    return dependency


CanReadAnomalies = Annotated[Principal, Depends(require(Permission.READ_ANOMALIES))]
CanReadCases = Annotated[Principal, Depends(require(Permission.READ_CASES))]
CanWriteCases = Annotated[Principal, Depends(require(Permission.WRITE_CASES))]
CanReadAudit = Annotated[Principal, Depends(require(Permission.READ_AUDIT))]
CanReadPrecision = Annotated[Principal, Depends(require(Permission.READ_PRECISION))]
CanReadTransactions = Annotated[Principal, Depends(require(Permission.READ_TRANSACTIONS))]
CanReadStats = Annotated[Principal, Depends(require(Permission.READ_STATS))]
CanReadRules = Annotated[Principal, Depends(require(Permission.READ_RULES))]
CanWriteRules = Annotated[Principal, Depends(require(Permission.WRITE_RULES))]
CanReadModels = Annotated[Principal, Depends(require(Permission.READ_MODELS))]
CanWriteModels = Annotated[Principal, Depends(require(Permission.WRITE_MODELS))]
CanScore = Annotated[Principal, Depends(require(Permission.SCORE))]
CanIngest = Annotated[Principal, Depends(require(Permission.INGEST))]
CanReadDecisions = Annotated[Principal, Depends(require(Permission.READ_DECISIONS))]
CanReadAlerts = Annotated[Principal, Depends(require(Permission.READ_ALERTS))]
CanWriteSilences = Annotated[Principal, Depends(require(Permission.WRITE_SILENCES))]
CanReadSystem = Annotated[Principal, Depends(require(Permission.READ_SYSTEM))]
