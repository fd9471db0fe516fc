"""`create_app(settings, ports=...)`: the FastAPI application, built on demand (never at import)."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from sqlalchemy import Engine, event

from api.alerts.views import router as alerts_router
from api.anomalies.views import router as anomalies_router
from api.audit.views import router as audit_router
from api.auth.keys import OidcKeys, VigilKeys
from api.auth.tokens import TokenIssuer, TokenVerifier
from api.auth.views import router as auth_router
from api.cases.views import router as cases_router
from api.context import AppContext, PrincipalCache, ProducerPool, RateLimiter
from api.decisions.views import router as decisions_router
from api.errors import ErrorBody, install_error_handlers
from api.feedback.views import router as feedback_router
from api.middleware import BodyLimitMiddleware, MetricsMiddleware
from api.ops.views import router as ops_router
from api.ports import ApiPorts
from api.registry.views import router as registry_router
from api.rules.views import router as rules_router
from api.spa import SpaStaticFiles
from api.stats.views import router as stats_router
from api.system.service import SystemStatus
from api.system.views import router as system_router
from api.transactions.models import submission_schemas
from api.transactions.views import router as transactions_router
from core.db import make_engine
from core.errors import ConfigError
from core.settings import Settings

log = logging.getLogger(__name__)

API_VERSION: Final = "1.0.0"
_DESCRIPTION: Final = """\
Vigil's one API for analysts, API clients and the dashboard.

**Auth**: send `Authorization: Bearer <JWT>` from `POST /v1/auth/token` (password grant for people,
client-credentials for API clients) or from the configured OIDC provider. Roles: `admin`, `analyst`,
`viewer`, `ingest`; non-admin tokens see only their tenants (other tenants' records answer 404).

**Errors** always look like `{"error": {"code", "message", "details"}}`.

**Lists** use opaque keyset cursors: pass `next_cursor` back as `cursor`; `limit` is capped at 500.

**Limits**: bodies over the configured size get 413; each client is rate limited (429 with `Retry-After`).
"""
_TAGS: Final = [
    {"name": "auth", "description": "Tokens, keys and identity."},
    {"name": "transactions", "description": "HTTP ingestion to Kafka and transaction lookup."},
    {"name": "decisions", "description": "Synchronous scoring and decisions for ingest clients."},
    {"name": "anomalies", "description": "The unified anomaly table."},
    {"name": "cases", "description": "Analyst work: cases per transaction and per entity."},
    {"name": "entities", "description": "Entity timelines."},
    {"name": "feedback", "description": "Labels and detector precision."},
    {"name": "audit", "description": "Append-only change history."},
    {"name": "stats", "description": "Dashboard figures."},
    {"name": "rules", "description": "Analyst rules: versions, validation, backtests."},
    {"name": "models", "description": "Registered models and serving aliases."},
    {"name": "alerts", "description": "Notification log and silences."},
    {"name": "operations", "description": "Health, readiness, metrics and the pipeline's status."},
]
_ROUTERS: Final = (
    auth_router,
    transactions_router,
    decisions_router,
    anomalies_router,
    cases_router,
    feedback_router,
    audit_router,
    stats_router,
    rules_router,
    registry_router,
    alerts_router,
    ops_router,
    system_router,
)


def _api_engine(settings: Settings) -> Engine:
    engine = make_engine(settings)
    timeout = int(settings.api_statement_timeout_ms)

    @event.listens_for(engine, "connect")
    def _statement_timeout(dbapi_connection: Any, _record: Any) -> None:
        # A runaway filter combination must not hold a connection (and a worker) for minutes.
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {timeout}")
        dbapi_connection.commit()

    return engine


def build_context(settings: Settings, *, ports: ApiPorts, engine: Engine | None = None) -> AppContext:
    """Everything a request needs, built once per process."""
    if (settings.oidc_jwks_url is None) != (settings.oidc_issuer is None):
        raise ConfigError("VIGIL_OIDC_JWKS_URL and VIGIL_OIDC_ISSUER must be set together")
    keys = VigilKeys(settings)
    oidc = None
    if settings.oidc_jwks_url is not None:
        oidc = OidcKeys(
            url=settings.oidc_jwks_url,
            algorithms=list(settings.oidc_algorithms),
            cache_seconds=settings.oidc_jwks_cache_seconds,
        )
    engine = engine or _api_engine(settings)
    return AppContext(
        settings=settings,
        engine=engine,
        ports=ports,
        keys=keys,
        issuer=TokenIssuer(settings, keys),
        verifier=TokenVerifier(settings, keys, oidc),
        principals=PrincipalCache(engine),
        limiter=RateLimiter(rate=settings.api_rate_limit_per_second, burst=settings.api_rate_limit_burst),
        login_limiter=RateLimiter(
            rate=settings.api_login_attempts_per_minute / 60.0, burst=settings.api_login_attempts_per_minute
        ),
        producers=ProducerPool(settings),
        status=SystemStatus(
            settings=settings,
            engine=engine,
            consumers=ports.consumers,
            local_degraded=_local_degraded(ports),
        ),
    )


def _local_degraded(ports: ApiPorts) -> Callable[[], list[str]] | None:
    """Detectors the API's own scorer cannot run (e.g. its model never loaded)."""
    degraded = getattr(ports.scorer, "degraded_detectors", None)
    return degraded if callable(degraded) else None


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title="Vigil API",
        version=API_VERSION,
        description=_DESCRIPTION,
        routes=app.routes,
        tags=_TAGS,
        license_info={"name": "Apache-2.0", "identifier": "Apache-2.0"},
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(submission_schemas())
    # One error shape everywhere: FastAPI's own validation schema never reaches clients.
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    components.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}"))
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if status.startswith(("4", "5")) and "content" in response:
                    body = response["content"].get("application/json")
                    if body is not None and body.get("schema", {}).get("$ref", "").endswith("HTTPValidationError"):
                        body["schema"] = error_ref
    for (path, method, status), links in _LINKS.items():
        schema["paths"][path][method]["responses"][status]["links"] = links
    app.openapi_schema = schema
    return schema


def _link(operation_id: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": parameters}


# OpenAPI links: how a response's ids feed the next call (clients and stateful fuzzers follow them).
_LINKS: Final[dict[tuple[str, str, str], dict[str, Any]]] = {
    ("/v1/anomalies", "get", "200"): {
        "GetAnomaly": _link("get_anomaly_v1_anomalies__anomaly_id__get", anomaly_id="$response.body#/data/0/anomaly_id")
    },
    ("/v1/cases", "get", "200"): {
        "GetCase": _link("get_case_v1_cases__case_id__get", case_id="$response.body#/data/0/case_id"),
        "UpdateCase": _link("update_case_v1_cases__case_id__patch", case_id="$response.body#/data/0/case_id"),
    },
    ("/v1/rules", "post", "201"): {
        "GetRule": _link("get_rule_v1_rules__rule_id__get", rule_id="$response.body#/rule_id"),
        "ToggleRule": _link("toggle_rule_v1_rules__rule_id__patch", rule_id="$response.body#/rule_id"),
        "PublishVersion": _link("publish_version_v1_rules__rule_id__versions_post", rule_id="$response.body#/rule_id"),
    },
    ("/v1/silences", "post", "201"): {
        "ExpireSilence": _link(
            "expire_silence_v1_silences__silence_id__expire_post", silence_id="$response.body#/silence_id"
        )
    },
}


def create_app(
    settings: Settings, *, ports: ApiPorts | None = None, engine: Engine | None = None, freeze_gc: bool = False
) -> FastAPI:
    """Build the API (and the dashboard's static files when `settings.web_dist_dir` exists).

    `freeze_gc=True` is for the server process (`vigil run api`): after start-up, existing objects
    are moved out of the collector's sight (`gc.freeze`). Leave it off where many apps share a
    process (tests), since frozen objects are never collected.
    """
    context = build_context(settings, ports=ports or ApiPorts(), engine=engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        for port in (context.ports.model_registry, context.ports.scorer):
            warm = getattr(port, "warm", None)
            if callable(warm):
                # Before serving: importing MLflow (or compiling kernels) holds the GIL for seconds,
                # which would stall requests.
                await run_in_threadpool(warm)
        if freeze_gc:
            # Start-up imports (MLflow, pandas, numpy) leave millions of long-lived objects; freezing them
            # keeps the collector from rescanning them, which otherwise shows up as 100+ ms request stalls.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            context.producers.close()
            close = getattr(context.ports.scorer, "close", None)
            if callable(close):
                close()
            if engine is None:
                context.engine.dispose()

    app = FastAPI(
        title="Vigil API",
        version=API_VERSION,
        lifespan=lifespan,
        openapi_tags=_TAGS,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.state.vigil = context
    install_error_handlers(app)
    for router in _ROUTERS:
        app.include_router(router)
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=settings.api_max_body_bytes,
        path_limits={
            "/v1/transactions": settings.max_message_bytes,
            "/v1/transactions:batch": settings.api_max_batch_bytes,
            "/v1/score": settings.max_message_bytes,
        },
    )
    app.add_middleware(MetricsMiddleware)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    dist = settings.web_dist_dir
    if dist.is_dir() and (dist / "index.html").is_file():
        app.mount("/", SpaStaticFiles(directory=dist, html=True), name="dashboard")
        log.info("serving the dashboard", extra={"directory": str(dist)})
    return app
