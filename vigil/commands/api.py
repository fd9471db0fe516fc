"""`vigil run api`, `vigil users add|list|disable`, `vigil clients add|list|disable`.

Composition root for the API: `build_ports` adapts the other packages to the
Protocols in `api.ports` (only what exists is wired; the rest answers 503).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from core.settings import Settings
from vigil.commands import settings_of as _settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from api import ApiPorts, PrincipalRecord
    from api.system import ConsumerSpec

log = logging.getLogger(__name__)

ROLE_NAMES = ("admin", "analyst", "viewer", "ingest")


def stream_consumers(settings: Settings) -> tuple[ConsumerSpec, ...]:
    """Consumer groups and input topics of the stream services, as `vigil run <service>` uses them.

    The detector groups are the `--group` defaults of their commands (not prefixed); the
    others follow `kafka_topic_prefix` like their services do. `status_consumer_groups`
    names the group of a service started with another `--group`.
    """
    from dataclasses import replace

    from api.system import ConsumerSpec
    from core.topics import ANOMALIES, TX_FEATURES, TX_RAW, TX_VALID

    prefix = settings.kafka_topic_prefix
    features = (settings.topic(TX_FEATURES),)
    default = (
        ConsumerSpec("ingest", f"{prefix}vigil-ingest", (settings.topic(TX_RAW),)),
        # The features stage assigns its partitions (it never joins the group) but commits there.
        ConsumerSpec("features", settings.topic("vigil-features"), (settings.topic(TX_VALID),), joins_group=False),
        ConsumerSpec("detect-statistical", "vigil-detect-statistical", features),
        ConsumerSpec("detect-rules", "vigil-detect-rules", features),
        ConsumerSpec("detect-ml", "vigil-detect-ml", features),
        ConsumerSpec("alerting", f"{prefix}{settings.alerting_consumer_group}", (settings.topic(ANOMALIES),)),
    )
    groups = settings.status_consumer_groups
    return tuple(replace(spec, group=groups.get(spec.service, spec.group)) for spec in default)


def build_ports(settings: Settings) -> ApiPorts:
    """Wire every capability whose package is available; report the rest as unwired."""
    from api import ApiPorts, MlflowModelRegistry

    rule_engine: Any = None
    try:
        from vigil.commands.rules import RulesPort

        rule_engine = RulesPort(settings=settings)
    except ImportError as exc:
        log.warning("rules port not wired", extra={"error": str(exc)})
    scorer: Any = None
    try:
        from vigil.scoring import build_scorer

        scorer = build_scorer(settings)
    except ImportError as exc:
        log.warning("scorer not wired", extra={"error": str(exc)})
    ports = ApiPorts(
        rule_engine=rule_engine,
        model_registry=MlflowModelRegistry(settings.mlflow_tracking_uri),
        scorer=scorer,
        consumers=stream_consumers(settings),
    )
    unwired = [name for name in ("rule_engine", "model_registry", "scorer") if getattr(ports, name) is None]
    if unwired:
        log.warning("API ports not wired; their endpoints answer 503", extra={"ports": unwired})
    return ports


def app_factory() -> FastAPI:
    """Application factory for `uvicorn --factory` (several workers): settings from the environment."""
    from api import create_app
    from core.logging import configure_logging
    from core.settings import load_settings

    settings = load_settings()
    configure_logging(service="api", level=settings.log_level, fmt=settings.log_format)
    return create_app(settings, ports=build_ports(settings), freeze_gc=True)


@click.command("api")
@click.option("--host", default=None, help="Interface to bind (default: VIGIL_API_HOST).")
@click.option("--port", default=None, type=click.IntRange(1, 65535), help="Port (default: VIGIL_API_PORT).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
@click.pass_context
def run_api(ctx: click.Context, host: str | None, port: int | None, workers: int) -> None:
    """Serve the API (and the dashboard from web/dist when built) until SIGTERM."""
    import uvicorn

    from api import create_app
    from core.logging import configure_logging

    settings = _settings(ctx)
    configure_logging(service="api", level=settings.log_level, fmt=settings.log_format)
    bind_host, bind_port = host or settings.api_host, port or settings.api_port
    common: dict[str, Any] = {
        "host": bind_host,
        "port": bind_port,
        "log_config": None,
        "access_log": False,
        "proxy_headers": True,
        "timeout_graceful_shutdown": 8,
    }
    if workers > 1:
        uvicorn.run("vigil.commands.api:app_factory", factory=True, workers=workers, **common)
    else:
        uvicorn.run(create_app(settings, ports=build_ports(settings), freeze_gc=True), **common)


# --- principals ---------------------------------------------------------------------------


def _secret_from(stdin: bool, *, prompt: str) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    value: str = click.prompt(prompt, hide_input=True, confirmation_prompt=True)
    return value


def _print_principals(records: list[PrincipalRecord], as_json: bool) -> None:
    rows: list[dict[str, Any]] = [
        {
            "principal_id": r.principal_id,
            "kind": r.kind,
            "roles": sorted(role.value for role in r.roles),
            "tenants": sorted(r.tenants),
            "disabled": r.disabled,
            "created_at": r.created_at.isoformat() if r.created_at else None,
        }
        for r in records
    ]
    if as_json:
        click.echo(json.dumps(rows))
        return
    for row in rows:
        state = "disabled" if row["disabled"] else "enabled"
        click.echo(
            f"{row['principal_id']:<24} {row['kind']:<6} {state:<8} roles={','.join(row['roles'])} "
            f"tenants={','.join(row['tenants']) or '*'}"
        )


def _create(
    ctx: click.Context, *, principal_id: str, kind: str, secret: str, roles: tuple[str, ...], tenants: tuple[str, ...]
) -> PrincipalRecord:
    from api import Role, create_principal
    from core.db import make_engine

    engine = make_engine(_settings(ctx), pool_size=1)
    try:
        with engine.begin() as connection:
            return create_principal(
                connection=connection,
                principal_id=principal_id,
                kind="client" if kind == "client" else "user",
                secret=secret,
                roles=[Role(r) for r in roles],
                tenants=tenants,
                actor="cli",
            )
    finally:
        engine.dispose()


def _list(ctx: click.Context, kind: str) -> list[PrincipalRecord]:
    from api import list_principals
    from core.db import make_engine

    engine = make_engine(_settings(ctx), pool_size=1)
    try:
        with engine.connect() as connection:
            return list_principals(connection=connection, kind="client" if kind == "client" else "user")
    finally:
        engine.dispose()


def _disable(ctx: click.Context, principal_id: str, kind: str) -> None:
    from api import ApiError, get_principal, set_disabled
    from core.db import make_engine

    engine = make_engine(_settings(ctx), pool_size=1)
    try:
        with engine.begin() as connection:
            record = get_principal(connection=connection, principal_id=principal_id)
            if record is None or record.kind != kind:
                raise click.ClickException(f"no {kind} {principal_id!r}")
            try:
                set_disabled(connection=connection, principal_id=principal_id, disabled=True, actor="cli")
            except ApiError as exc:
                raise click.ClickException(exc.message) from None
    finally:
        engine.dispose()


_roles = click.option(
    "--role", "roles", multiple=True, required=True, type=click.Choice(ROLE_NAMES), help="Repeat for several."
)
_tenants = click.option("--tenant", "tenants", multiple=True, help="Tenant id; repeat for several (admins: none).")
_json = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


@click.group("users")
def users() -> None:
    """People who log in with a password (`POST /v1/auth/token`, grant_type=password)."""


@users.command("add")
@click.argument("username")
@_roles
@_tenants
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.pass_context
def users_add(
    ctx: click.Context, username: str, roles: tuple[str, ...], tenants: tuple[str, ...], password_stdin: bool
) -> None:
    """Create a user (Argon2id-hashed password, at least 12 characters)."""
    from api import ApiError

    password = _secret_from(password_stdin, prompt="Password")
    try:
        record = _create(ctx, principal_id=username, kind="user", secret=password, roles=roles, tenants=tenants)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"created user {record.principal_id}")


@users.command("list")
@_json
@click.pass_context
def users_list(ctx: click.Context, as_json: bool) -> None:
    """List users."""
    _print_principals(_list(ctx, "user"), as_json)


@users.command("disable")
@click.argument("username")
@click.pass_context
def users_disable(ctx: click.Context, username: str) -> None:
    """Disable a user: new logins fail and existing tokens stop working within seconds."""
    _disable(ctx, username, "user")
    click.echo(f"disabled user {username}")


@click.group("clients")
def clients() -> None:
    """API clients using the client-credentials grant (e.g. ingest clients at a payment facility)."""


@clients.command("add")
@click.argument("client_id")
@_roles
@_tenants
@_json
@click.pass_context
def clients_add(
    ctx: click.Context, client_id: str, roles: tuple[str, ...], tenants: tuple[str, ...], as_json: bool
) -> None:
    """Create a client and print its secret once (only a hash is stored)."""
    from api import ApiError, new_client_secret

    secret = new_client_secret()
    try:
        record = _create(ctx, principal_id=client_id, kind="client", secret=secret, roles=roles, tenants=tenants)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(json.dumps({"client_id": record.principal_id, "client_secret": secret}))
    else:
        click.echo(
            f"client_id:     {record.principal_id}\nclient_secret: {secret}\n(store it now: it is not shown again)"
        )


@clients.command("list")
@_json
@click.pass_context
def clients_list(ctx: click.Context, as_json: bool) -> None:
    """List API clients."""
    _print_principals(_list(ctx, "client"), as_json)


@clients.command("disable")
@click.argument("client_id")
@click.pass_context
def clients_disable(ctx: click.Context, client_id: str) -> None:
    """Disable a client: token requests fail and existing tokens stop working within seconds."""
    _disable(ctx, client_id, "client")
    click.echo(f"disabled client {client_id}")


commands = [users, clients]
run_commands = [run_api]
