"""The Grafana dashboard and the alert rules query metrics the services really export."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.conftest import CHART, REPO, Rendered

# On a fresh machine the session fixture builds helm and the checkers venv first (minutes).
pytestmark = pytest.mark.timeout(1800)

DASHBOARD = CHART / "files" / "grafana" / "vigil-pipeline.json"
METRIC = re.compile(r"\bvigil_[a-z0-9_]+\b")
# Every package a Vigil process may import: metrics they register at import time are exported too.
PACKAGES = ("core.metrics", "ingestion", "features", "detectors", "rules", "api", "alerting")
_EXPORTER = """
import importlib, sys, time
from core import metrics
for name in sys.argv[2:]:
    importlib.import_module(name)
metrics.serve_ops(health=metrics.Health(), port=int(sys.argv[1]), host="127.0.0.1")
print("serving", flush=True)
time.sleep(120)
"""
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


@pytest.fixture(scope="module")
def exported_metrics() -> set[str]:
    """Series names on the /metrics endpoint of a live process that imported every service package."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-c", _EXPORTER, str(port), *PACKAGES],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == "serving", process.stderr.read() if process.stderr else line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        process.terminate()
        process.wait(timeout=10)
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
    return {name for name in names if name.startswith("vigil_")}


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


def test_the_exporter_sees_the_shared_metrics(exported_metrics: set[str]) -> None:
    # Sanity: the live endpoint lists labelled families before their first use.
    assert {
        "vigil_consumer_lag",
        "vigil_anomalies_total",
        "vigil_end_to_end_latency_seconds_bucket",
    } <= exported_metrics


def test_dashboard_queries_reference_exported_metrics(exported_metrics: set[str]) -> None:
    expressions = _expressions(_dashboard())
    assert expressions
    for expr in expressions:
        used = set(METRIC.findall(expr))
        assert used, f"query uses no Vigil metric: {expr}"
        assert used <= exported_metrics, f"not exported: {sorted(used - exported_metrics)} in {expr}"


def test_alert_rules_reference_exported_metrics(exported_metrics: set[str], production_render: Rendered) -> None:
    rule = production_render.named("PrometheusRule", "vigil")
    for group in rule["spec"]["groups"]:
        for item in group["rules"]:
            used = set(METRIC.findall(str(item["expr"])))
            assert used <= exported_metrics, f"{item['alert']}: not exported {sorted(used - exported_metrics)}"


def test_dashboard_shows_what_operators_watch() -> None:
    dashboard = _dashboard()
    assert dashboard["refresh"] == "5s"
    assert dashboard["uid"] == "vigil-pipeline"
    exprs = "\n".join(_expressions(dashboard))
    for needle in (
        "rate(vigil_transactions_accepted_total",  # ingestion rate
        "histogram_quantile(0.50, sum by (le, detector_family) (rate(vigil_end_to_end_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (le, detector_family) (rate(vigil_end_to_end_latency_seconds_bucket",
        "rate(vigil_dead_letters_total",  # DLQ rate
        "rate(vigil_batch_failures_total",  # errors
        "sum by (group, topic) (vigil_consumer_lag",  # lag per stage
        "sum by (detector_family, detector_name, severity) (rate(vigil_anomalies_total",
        "sum by (receiver, status) (increase(vigil_notifications_total",  # sent / failed
    ):
        assert needle in exprs, needle
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_chart_ships_the_dashboard_unchanged(production_render: Rendered) -> None:
    config_map = production_render.named("ConfigMap", "vigil-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["vigil-pipeline.json"]) == _dashboard()


def test_dashboard_file_is_the_one_documented() -> None:
    assert str(DASHBOARD.relative_to(REPO)) in (REPO / "docs" / "deploy.md").read_text()
