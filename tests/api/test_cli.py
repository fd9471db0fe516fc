"""`vigil users add|list|disable` and `vigil clients add|list|disable` on the session database."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from starlette.testclient import TestClient

from vigil.cli import cli

pytestmark = pytest.mark.integration


def test_users_and_clients_round_trip_through_the_token_endpoint(
    database_url: str, db: Engine, client: TestClient
) -> None:
    runner = CliRunner()
    env = {"VIGIL_DATABASE_URL": database_url}
    added = runner.invoke(
        cli,
        ["users", "add", "dana", "--role", "analyst", "--tenant", "acme", "--password-stdin"],
        input="a long enough password\n",
        env=env,
    )
    assert added.exit_code == 0, added.output
    weak = runner.invoke(
        cli,
        ["users", "add", "eve", "--role", "viewer", "--tenant", "acme", "--password-stdin"],
        input="short\n",
        env=env,
    )
    assert weak.exit_code != 0 and "12 characters" in weak.output
    duplicate = runner.invoke(
        cli,
        ["users", "add", "dana", "--role", "viewer", "--tenant", "acme", "--password-stdin"],
        input="another long password\n",
        env=env,
    )
    assert duplicate.exit_code != 0 and "already exists" in duplicate.output
    made = runner.invoke(cli, ["clients", "add", "pos-7", "--role", "ingest", "--tenant", "acme", "--json"], env=env)
    assert made.exit_code == 0, made.output
    secret = json.loads(made.output)["client_secret"]
    assert len(secret) >= 40

    listed = json.loads(runner.invoke(cli, ["users", "list", "--json"], env=env).output)
    assert [(u["principal_id"], u["roles"], u["tenants"], u["disabled"]) for u in listed] == [
        ("dana", ["analyst"], ["acme"], False)
    ]
    assert [
        c["principal_id"] for c in json.loads(runner.invoke(cli, ["clients", "list", "--json"], env=env).output)
    ] == ["pos-7"]

    login = client.post(
        "/v1/auth/token", data={"grant_type": "password", "username": "dana", "password": "a long enough password"}
    )
    assert login.status_code == 200
    machine = client.post(
        "/v1/auth/token", data={"grant_type": "client_credentials", "client_id": "pos-7", "client_secret": secret}
    )
    assert machine.status_code == 200

    assert runner.invoke(cli, ["users", "disable", "dana"], env=env).exit_code == 0
    assert runner.invoke(cli, ["clients", "disable", "dana"], env=env).exit_code != 0  # dana is a user
    refused = client.post(
        "/v1/auth/token", data={"grant_type": "password", "username": "dana", "password": "a long enough password"}
    )
    assert refused.status_code == 401
    assert "disabled" in runner.invoke(cli, ["users", "list"], env=env).output
