"""`/v1/models`: list registered models; promote and roll back serving aliases (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.audit import service as audit
from api.deps import CanReadModels, CanWriteModels, Ctx, WriteDb
from api.errors import NotFoundError, UnavailableError, UnprocessableError, error_responses
from api.ports import AliasChange, ModelNotFoundError
from api.registry.models import AliasChangeView, ModelList, ModelView, PromoteIn, RollbackIn
from core.errors import VigilError

router = APIRouter(prefix="/v1/models", tags=["models"])
_Name = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")]


def _unavailable(exc: Exception) -> UnavailableError:
    return UnavailableError(f"the model registry failed: {type(exc).__name__}", code="registry_unavailable")


@router.get(
    "",
    summary="Registered models, versions and aliases",
    response_model=ModelList,
    responses=error_responses(401, 403, 429, 503),
)
def list_models(ctx: Ctx, principal: CanReadModels) -> ModelList:
    del principal
    registry = ctx.ports.require_model_registry()
    try:
        models = registry.list_models()
    except VigilError:
        raise
    except Exception as exc:  # the registry is a remote service: any failure is "unavailable"
        raise _unavailable(exc) from exc
    return ModelList(data=[ModelView.model_validate(m, from_attributes=True) for m in models])


def _audit(connection: WriteDb, actor: str, action: str, change: AliasChange) -> None:
    audit.record(
        connection=connection,
        actor=actor,
        tenant_id=None,
        action=action,
        object_type="model",
        object_id=change.name,
        details={"alias": change.alias, "from": change.previous_version, "to": change.version},
    )


@router.post(
    "/{name}:promote",
    summary="Point an alias at a version",
    response_model=AliasChangeView,
    responses=error_responses(401, 403, 404, 413, 422, 429, 503),
)
def promote(ctx: Ctx, principal: CanWriteModels, connection: WriteDb, name: _Name, body: PromoteIn) -> AliasChangeView:
    """Detectors serving `@alias` pick the new version up without restart; audited."""
    registry = ctx.ports.require_model_registry()
    try:
        change = registry.promote(name=name, version=body.version, alias=body.alias)
    except ModelNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    except ValueError as exc:
        raise UnprocessableError(str(exc), code="invalid_alias") from None
    except VigilError:
        raise
    except Exception as exc:
        raise _unavailable(exc) from exc
    _audit(connection, principal.principal_id, "model.promote", change)
    return AliasChangeView.model_validate(change, from_attributes=True)


@router.post(
    "/{name}:rollback",
    summary="Point an alias back at its previous version",
    response_model=AliasChangeView,
    responses=error_responses(401, 403, 404, 413, 422, 429, 503),
)
def rollback(
    ctx: Ctx, principal: CanWriteModels, connection: WriteDb, name: _Name, body: RollbackIn
) -> AliasChangeView:
    registry = ctx.ports.require_model_registry()
    try:
        change = registry.rollback(name=name, alias=body.alias)
    except ModelNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    except ValueError as exc:
        raise UnprocessableError(str(exc), code="invalid_alias") from None
    except VigilError:
        raise
    except Exception as exc:
        raise _unavailable(exc) from exc
    _audit(connection, principal.principal_id, "model.rollback", change)
    return AliasChangeView.model_validate(change, from_attributes=True)
