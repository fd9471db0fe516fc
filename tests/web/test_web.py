"""The dashboard's suites, run through pytest so `make test` covers them.

Type check and component tests (Vitest), the OpenAPI drift checks, and the end-to-end run:
Debian's Chromium (playwright-core) drives the built dashboard served by `vigil run api`
over the real pipeline with generated traffic, and screenshots every page.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from core.settings import Settings
from tests.web.pipeline import Pipeline, anomalies_today, open_cases
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
WEB_SH = ROOT / "scripts" / "web.sh"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
TENANT = "tenant-1"
PASSWORD = "correct-horse-battery"  # a throwaway test user's password


def _run(*argv: str, cwd: Path = ROOT, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        list(argv), cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(argv)} failed ({done.returncode}):\n{output[-6000:]}"
    return output


@pytest.fixture(scope="module")
def web_installed() -> None:
    """node_modules from the lock and Debian's Chromium (fast when already there)."""
    _run(str(WEB_SH), "install")


def test_typescript_type_checks(web_installed: None) -> None:
    _run("npm", "run", "--silent", "typecheck", cwd=WEB)


def test_component_tests_pass(web_installed: None) -> None:
    output = _run(str(WEB_SH), "test")
    assert " passed" in output and " failed" not in output, output[-3000:]


def test_committed_openapi_spec_matches_the_app() -> None:
    from api import create_app
    from core.settings import load_settings

    live = create_app(load_settings(environment="test", web_dist_dir=Path("/nonexistent"))).openapi()
    committed = json.loads((WEB / "openapi.json").read_text(encoding="utf-8"))
    assert committed == json.loads(json.dumps(live)), (
        "web/openapi.json differs from the API: run `scripts/web.sh openapi` and commit the result"
    )


def test_generated_client_types_match_the_spec(web_installed: None) -> None:
    _run(str(WEB_SH), "check-openapi")


# --- end to end -------------------------------------------------------------------------------


def model_name(settings: Settings) -> str:
    return f"vigil-e2e-{settings.kafka_topic_prefix.strip('.')}"


def _add_user(engine: Engine, name: str, roles: list[str], tenants: list[str]) -> None:
    from api import Role, create_principal

    with engine.begin() as connection:
        create_principal(
            connection=connection,
            principal_id=name,
            kind="user",
            secret=PASSWORD,
            roles=[Role(r) for r in roles],
            tenants=tenants,
            actor="e2e",
        )


@pytest.fixture
def live_pipeline(topics: Settings, db: Engine, tmp_path: Path, web_installed: None) -> Iterator[Pipeline]:
    _run(str(WEB_SH), "build")
    for name, roles, tenants in (
        ("e2e-analyst", ["analyst"], [TENANT]),
        ("e2e-admin", ["admin"], []),
        ("e2e-viewer", ["viewer"], [TENANT]),
        ("e2e-ingest", ["ingest"], [TENANT]),
    ):
        _add_user(db, name, roles, tenants)
    pipeline = Pipeline(settings=topics, log_dir=tmp_path)
    try:
        pipeline.run("rules", "seed")
        pipeline.start_services()
        # Kafka holds the traffic while the services import and join their groups.
        pipeline.generate_history(accounts=60, days=3, transactions=2400)
        pipeline.generate_live(accounts=60, rate=12)
        pipeline.send_malformed(3)
        wait_for(pipeline.api_ready, timeout=240, what="the API")

        def flowing() -> bool:
            pipeline.assert_alive()
            return anomalies_today(db, TENANT) >= 5 and open_cases(db) >= 3

        wait_for(flowing, timeout=240, what="live anomalies and open cases", every=1.0)
        # A real model trained on this run's history, so the Models page has versions and metrics.
        start = (datetime.now(UTC) - timedelta(days=3, hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
        end = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
        train = ("train", "--model", model_name(topics), "--kind", "hbos", "--from", start, "--to", end)
        pipeline.run(*train, timeout=300)
        yield pipeline
    except BaseException:
        for name in pipeline.processes:
            print(f"--- {name} ---\n{pipeline.tail(name)}")
        raise
    finally:
        pipeline.stop()


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_dashboard_end_to_end(live_pipeline: Pipeline, db: Engine) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    output = _run(
        "node",
        "e2e/run.mjs",
        cwd=WEB,
        timeout=300,
        env={
            "VIGIL_E2E_URL": live_pipeline.url,
            "VIGIL_E2E_PASSWORD": PASSWORD,
            "VIGIL_E2E_SCREENSHOTS": str(SCREENSHOTS),
            "VIGIL_E2E_MODEL": model_name(live_pipeline.settings),
        },
    )
    result = json.loads(next(line for line in reversed(output.splitlines()) if line.startswith("{")))

    # The verdict clicked in the browser is a label the API (and the training data) now holds.
    with db.connect() as connection:
        label = connection.execute(
            text("SELECT label, author, source FROM labels WHERE transaction_id = :tx"),
            {"tx": result["transaction_id"]},
        ).one()
        silence = connection.execute(
            text("SELECT comment, created_by FROM silences WHERE comment = :comment"), {"comment": result["silence"]}
        ).one()
    assert tuple(label) == ("fraud", "e2e-analyst", "analyst")
    assert tuple(silence) == (result["silence"], "e2e-analyst")

    token = httpx.post(
        f"{live_pipeline.url}/v1/auth/token",
        data={"grant_type": "password", "username": "e2e-viewer", "password": PASSWORD},
    ).json()["access_token"]
    case = httpx.get(
        f"{live_pipeline.url}/v1/cases/{result['case_id']}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert case["status"] == "confirmed_fraud"
    assert case["label"]["label"] == "fraud"

    # The health page's figures are the pipeline's own: dead letters from the malformed messages,
    # every stream service reachable, consumer lag measured for each group.
    admin = httpx.post(
        f"{live_pipeline.url}/v1/auth/token",
        data={"grant_type": "password", "username": "e2e-analyst", "password": PASSWORD},
    ).json()["access_token"]
    status = httpx.get(
        f"{live_pipeline.url}/v1/system/status", headers={"Authorization": f"Bearer {admin}"}, timeout=30
    ).json()
    assert status["kafka_reachable"] and status["dlq"]["depth"] >= 3, status
    services = {s["name"]: s for s in status["services"]}
    assert services["ingest"]["status"] == "ready" and services["detect-rules"]["status"] == "ready", services
    assert all(services[n]["consumer"]["lag"] is not None for n in ("ingest", "features", "detect-rules")), services
    assert result["health"]["dlq"] >= 3 and result["health"]["lag"] is not None, result

    shots = sorted(p.name for p in SCREENSHOTS.glob("*.png"))
    pages = ("overview", "queue", "case", "case-confirmed", "rules-error", "rule-backtest", "alerts", "models")
    for page in (*pages, "health"):
        assert any(name.endswith(f"{page}.png") for name in shots), f"missing screenshot of {page}: {shots}"
    assert all((SCREENSHOTS / name).stat().st_size > 10_000 for name in shots)
