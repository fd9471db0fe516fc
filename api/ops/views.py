"""`/healthz`, `/readyz` (database and Kafka) and `/metrics`."""

from __future__ import annotations

from typing import Any

from confluent_kafka.admin import AdminClient
from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from api.deps import Ctx
from core.db import database_ready
from core.kafka import client_config
from core.settings import Settings

router = APIRouter(tags=["operations"])


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool
    checks: dict[str, bool]


def _kafka_ready(settings: Settings) -> bool:
    try:
        admin = AdminClient(client_config(settings, **{"socket.timeout.ms": 2000}))
        return admin.list_topics(timeout=2.0).brokers is not None
    except Exception:  # any failure to reach the broker is "not ready", never a crashed probe
        return False


def _database_ready(ctx: Any) -> bool:
    try:
        return database_ready(ctx.engine)
    except Exception:  # same: a probe reports, it does not raise
        return False


@router.get("/healthz", summary="Liveness", response_model=Live, openapi_extra={"security": []})
async def healthz() -> Live:
    """200 while the process serves requests."""
    return Live(live=True)


@router.get(
    "/readyz",
    summary="Readiness (database and Kafka)",
    response_model=Ready,
    responses={503: {"model": Ready, "description": "A dependency does not answer."}},
    openapi_extra={"security": []},
)
async def readyz(ctx: Ctx) -> Response:
    checks = {
        "database": await run_in_threadpool(_database_ready, ctx),
        "kafka": await run_in_threadpool(_kafka_ready, ctx.settings),
    }
    ready = all(checks.values())
    return JSONResponse(Ready(ready=ready, checks=checks).model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
    openapi_extra={"security": []},
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
