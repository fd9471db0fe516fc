"""`vigil users add|list|disable` and `vigil clients add|list|disable` on the session database."""

from __future__ import annotations

import json
from pathlib import Path

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


def test_vigil_run_api_serves_and_stops_on_sigterm(database_url: str, tmp_path: Path) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "VIGIL_DATABASE_URL": database_url,
        "VIGIL_WEB_DIST_DIR": str(tmp_path / "none"),
        "VIGIL_LOG_LEVEL": "WARNING",
    }
    vigil = str(Path(sys.executable).with_name("vigil"))
    server = subprocess.Popen([vigil, "run", "api", "--port", str(port)], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.HTTPError:
                assert server.poll() is None and time.monotonic() < deadline, "vigil run api did not start"
                time.sleep(0.3)
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert httpx.get(f"http://127.0.0.1:{port}/v1/auth/me").status_code == 401
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught: -15 is a clean stop.
        assert server.wait(timeout=10) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 10
        assert server.stderr is not None and b"Traceback" not in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
