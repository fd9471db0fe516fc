"""The Helm chart: lint, render, Kubernetes schemas, checkov, and what the manifests promise."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from core.settings import Settings, load_settings
from core.topics import STREAM_TOPICS
from tests.deploy.conftest import (
    CHART,
    KUBE_VERSION,
    PRODUCTION_VALUES,
    REPO,
    STAGES,
    STREAM_STAGES,
    WORKLOAD_KINDS,
    Rendered,
    Tools,
    helm_template,
    load_yaml,
    pod_labels,
    pod_spec,
)

# On a fresh machine the session fixture builds helm and the checkers venv first (minutes).
pytestmark = pytest.mark.timeout(1800)

CRD_SCHEMAS = Path(__file__).with_name("crd-schemas")
ALERTING_RULES = REPO / "alerting" / "prometheus-rules.yaml"
CHART_ALERTING_RULES = CHART / "files" / "alerting-prometheus-rules.yaml"
ALERTING_DEFAULT_CONFIG = REPO / "alerting" / "default-config.yaml"
# Stand-ins for values that live in existing Secrets the test cluster does not have.
FAKE_SECRETS = {
    "VIGIL_DATABASE_URL": "postgresql+psycopg://vigil:s3cret@db.example.invalid:5432/vigil",
    "DATABASE_PASSWORD": "s3cret",
    "VIGIL_JWT_SECRET": "x" * 48,
}


# --- helm lint and the Kubernetes schemas -------------------------------------------------------


@pytest.mark.parametrize("values", [None, PRODUCTION_VALUES], ids=["default", "production"])
def test_helm_lint_is_clean(tools: Tools, values: Path | None) -> None:
    command = [str(tools.helm), "lint", str(CHART), "--strict", "--namespace", "vigil", "--kube-version", KUBE_VERSION]
    if values:
        command += ["--values", str(values)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_every_manifest_validates_against_the_kubernetes_schemas(
    tools: Tools, default_render: Rendered, production_render: Rendered
) -> None:
    result = subprocess.run(
        [
            str(tools.kubernetes_validate),
            "--strict",
            "--kubernetes-version",
            KUBE_VERSION.rsplit(".", 1)[0],
            str(default_render.path),
            str(production_render.path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ERROR" not in output, output
    passed = len(re.findall(r"^INFO .* passed for resource", output, flags=re.MULTILINE))
    # Custom resources have no Kubernetes schema: they are checked against crd-schemas/ below.
    custom = {"ScaledObject", "ServiceMonitor", "PrometheusRule", "KafkaTopic"}
    built_in = [d for r in (default_render, production_render) for d in r.documents if d["kind"] not in custom]
    assert passed == len(built_in), output


def test_custom_resources_validate_against_their_crd_schemas(
    tools: Tools, default_render: Rendered, production_render: Rendered
) -> None:
    result = subprocess.run(
        [
            str(tools.python),
            str(Path(__file__).with_name("tools") / "validate_crds.py"),
            str(CRD_SCHEMAS),
            str(default_render.path),
            str(production_render.path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["errors"] == []
    kinds = {name.split("/")[0] for name in report["validated"]}
    assert kinds == {"ScaledObject", "ServiceMonitor", "PrometheusRule", "KafkaTopic"}


def test_crd_schemas_reject_a_broken_custom_resource(tools: Tools, tmp_path: Path) -> None:
    broken = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x", "namespace": "vigil"},
        "spec": {"scaleTargetRef": {"name": "x"}, "triggers": [{"type": "kafka", "metadata": {"lagThreshold": 5}}]},
    }
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    script = Path(__file__).with_name("tools") / "validate_crds.py"
    result = subprocess.run(
        [str(tools.python), str(script), str(CRD_SCHEMAS), str(path)], capture_output=True, text=True, check=False
    )
    assert any("lagThreshold" in error for error in json.loads(result.stdout)["errors"])


def test_checkov_passes_on_the_rendered_chart_with_justified_skips(
    tools: Tools, default_render: Rendered, production_render: Rendered
) -> None:
    report = _checkov(tools, default_render.path.parent, "kubernetes")
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["failed"] == 0, [
        (check["check_id"], check["resource"]) for check in report["results"]["failed_checks"]
    ]
    assert report["summary"]["passed"] > 100
    _assert_skips_are_justified(report)


def test_checkov_passes_on_terraform_with_justified_skips(tools: Tools) -> None:
    report = _checkov(tools, REPO / "terraform", "terraform")
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["failed"] == 0, [
        (check["check_id"], check["resource"]) for check in report["results"]["failed_checks"]
    ]
    assert report["summary"]["passed"] > 50
    _assert_skips_are_justified(report)


def _checkov(tools: Tools, directory: Path, framework: str) -> dict[str, Any]:
    result = subprocess.run(
        [str(tools.checkov), "-d", str(directory), "--framework", framework, "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        # No guideline download and no telemetry: the checks run offline.
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    parsed = json.loads(result.stdout)
    reports = parsed if isinstance(parsed, list) else [parsed]
    matching = [report for report in reports if report.get("check_type") == framework]
    assert len(matching) == 1, result.stdout[:2000]
    report: dict[str, Any] = matching[0]
    return report


def _assert_skips_are_justified(report: dict[str, Any]) -> None:
    for check in report["results"].get("skipped_checks", []):
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.strip()) > 20, f"{check['check_id']} on {check['resource']} is skipped without a reason"


# --- values and settings ------------------------------------------------------------------------


def _secret_settings() -> set[str]:
    """Settings fields holding secrets, plus the alerting receivers' secret variables."""
    names = {name for name, field in Settings.model_fields.items() if SecretStr in _types(field.annotation)}
    names.add("database_url")  # carries the database password
    for receiver in load_yaml(ALERTING_DEFAULT_CONFIG).get("receivers", []):
        for key, variable in receiver.items():
            if key.endswith("_env") and key.removesuffix("_env") in {"webhook_url", "token", "password", "secret"}:
                names.add(str(variable).removeprefix("VIGIL_").lower())
    return names


def _types(annotation: Any) -> set[Any]:
    return {annotation, *getattr(annotation, "__args__", ())}


def _known_settings() -> set[str]:
    """Settings fields, plus the VIGIL_* variables the alerting config reads (`*_env`)."""
    known = set(Settings.model_fields)
    for receiver in load_yaml(ALERTING_DEFAULT_CONFIG).get("receivers", []):
        known |= {str(v).removeprefix("VIGIL_").lower() for k, v in receiver.items() if k.endswith("_env")}
    return known


@pytest.mark.parametrize("values", [CHART / "values.yaml", PRODUCTION_VALUES], ids=["default", "production"])
def test_config_names_only_known_settings_and_no_secrets(values: Path) -> None:
    config = load_yaml(values).get("config", {})
    unknown = set(config) - _known_settings()
    assert not unknown, f"not Vigil settings (typo?): {sorted(unknown)}"
    leaked = set(config) & _secret_settings()
    assert not leaked, f"secret settings belong in secretRefs/existingSecrets, not the ConfigMap: {leaked}"


def test_secret_settings_never_reach_a_configmap(render: Rendered) -> None:
    secret_variables = {f"VIGIL_{name.upper()}" for name in _secret_settings()}
    for config_map in render.of_kind("ConfigMap"):
        assert not secret_variables & set(config_map.get("data", {})), config_map["metadata"]["name"]


def _container_env(render: Rendered, container: dict[str, Any]) -> dict[str, str]:
    """The environment Kubernetes would give the container (existing Secrets faked)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(_data(render, "ConfigMap", source["configMapRef"]["name"]))
        elif "secretRef" in source:
            env.update(_data(render, "Secret", source["secretRef"]["name"]))
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], variable["value"])
        else:
            assert "secretKeyRef" in variable["valueFrom"], variable
            env[variable["name"]] = FAKE_SECRETS.get(variable["name"], "fake-secret-value")
    return env


def _data(render: Rendered, kind: str, name: str) -> dict[str, str]:
    matches = [doc for doc in render.of_kind(kind) if doc["metadata"]["name"] == name]
    if not matches:
        assert kind == "Secret", f"ConfigMap {name} is referenced but not rendered"
        return {}  # an existing Secret (existingSecrets): its keys are not known here
    document = matches[0]
    if kind == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in document.get("data", {}).items()}
    return dict(document.get("data", {}))


def test_every_workload_gets_settings_that_load_in_production(
    render: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    workloads = [doc for kind in WORKLOAD_KINDS for doc in render.of_kind(kind)]
    assert workloads
    for workload in workloads:
        spec = pod_spec(workload)
        for container in spec.get("initContainers", []) + spec["containers"]:
            env = _container_env(render, container)
            for name in [name for name in os.environ if name.startswith("VIGIL_")]:
                monkeypatch.delenv(name)
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            settings = load_settings()
            assert settings.environment == "production", workload["metadata"]["name"]
            assert settings.database_url.startswith("postgresql+psycopg://")
            assert settings.jwt_private_key_file is not None or settings.jwt_secret.get_secret_value() != ""


def test_stream_stages_serve_ops_on_the_probed_port_and_the_api_on_its_own(render: Rendered) -> None:
    for stage in STAGES:
        deployment = render.named("Deployment", f"vigil-{stage}")
        container = pod_spec(deployment)["containers"][0]
        assert container["args"] == ["run", stage]
        env = _container_env(render, container)
        port = {p["name"]: p["containerPort"] for p in container["ports"]}
        probe_port = "http" if stage == "api" else "ops"
        if stage == "api":
            assert env["VIGIL_API_HOST"] == "0.0.0.0"
            assert int(env["VIGIL_API_PORT"]) == port["http"]
        else:
            assert int(env["VIGIL_METRICS_PORT"]) == port["ops"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": probe_port}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": probe_port}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_production_alerting_config_is_accepted_by_the_alerting_service(production_render: Rendered) -> None:
    from alerting.config import build_config

    deployment = production_render.named("Deployment", "vigil-alerting")
    env = _container_env(production_render, pod_spec(deployment)["containers"][0])
    path = env["VIGIL_ALERTING_CONFIG_FILE"]
    assert path.startswith("/etc/vigil/files/")
    files = production_render.named("ConfigMap", "vigil-files")["data"]
    config = build_config(yaml.safe_load(files[Path(path).name]), environ=env)
    assert {receiver.name for receiver in config.receivers} == {"slack", "email"}
    assert config.unconfigured_receivers == {}


def test_values_schema_rejects_mistakes(tools: Tools) -> None:
    mistakes = {
        "services.ingst.enabled=true": "/services/ingst",
        "config.jwt_secret=oops": "/config/jwt_secret",
        "config.database_url=postgresql://u:p@h/d": "/config/database_url",
        "services.ingest.consumerGroup=": "/services/ingest/consumerGroup",
        "securityContext.allowPrivilegeEscalation=true": "/securityContext/allowPrivilegeEscalation",
        "image.digest=sha256:short": "/image/digest",
        "topics.tx\\.raww.partitions=3": "tx.raww",
    }
    for setting, where in mistakes.items():
        result = helm_template(tools, "--set", setting)
        assert result.returncode != 0, f"{setting} was accepted"
        assert where in result.stderr, result.stderr


# --- workloads -----------------------------------------------------------------------------------


def test_one_deployment_per_stage(render: Rendered) -> None:
    deployments = {doc["metadata"]["name"]: doc for doc in render.of_kind("Deployment")}
    assert set(deployments) == {f"vigil-{stage}" for stage in STAGES}


def test_every_pod_is_hardened_and_sized(render: Rendered) -> None:
    for workload in [doc for kind in WORKLOAD_KINDS for doc in render.of_kind(kind)]:
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        mounts_tmp = {volume["name"] for volume in spec["volumes"] if "emptyDir" in volume}
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert context["runAsUser"] >= 10000, name
            assert set(container["resources"]["limits"]) == {"cpu", "memory"}, name
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}, name
            assert any(m["mountPath"] == "/tmp" and m["name"] in mounts_tmp for m in container["volumeMounts"])


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook_after_the_database_answers(
    render: Rendered,
) -> None:
    job = render.named("Job", "vigil-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    spec = pod_spec(job)
    assert spec["containers"][0]["args"] == ["db", "upgrade"]
    assert [c["name"] for c in spec["initContainers"]] == ["wait-for-database"]
    assert "SELECT 1" in spec["initContainers"][0]["command"][-1]
    # Hooks run before the release's ConfigMap exists: the Job reads hook copies created just before it.
    config_ref = spec["containers"][0]["envFrom"][0]["configMapRef"]["name"]
    copy = render.named("ConfigMap", config_ref)
    assert int(copy["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])
    assert copy["data"] == render.named("ConfigMap", "vigil-config")["data"]


def test_cronjobs_run_the_aggregate_check_and_train_each_model(render: Rendered) -> None:
    commands = {doc["metadata"]["name"]: pod_spec(doc)["containers"][0]["args"] for doc in render.of_kind("CronJob")}
    values = load_yaml(CHART / "values.yaml")
    expected = {"vigil-aggregate-check": ["run", "aggregate-check"]}
    for model in values["cronJobs"]["train"]["models"]:
        expected[f"vigil-train-{model}"] = ["train", "--model", model]
    assert commands == expected
    for cron in render.of_kind("CronJob"):
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"


def test_keda_scales_each_stream_stage_on_its_consumer_lag(production_render: Rendered) -> None:
    values = load_yaml(CHART / "values.yaml")
    scaled = {doc["spec"]["scaleTargetRef"]["name"]: doc for doc in production_render.of_kind("ScaledObject")}
    assert set(scaled) == {f"vigil-{stage}" for stage in STREAM_STAGES}
    bootstrap = load_yaml(PRODUCTION_VALUES)["config"]["kafka_bootstrap"]
    for stage in STREAM_STAGES:
        trigger = scaled[f"vigil-{stage}"]["spec"]["triggers"][0]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["topic"] == values["services"][stage]["topic"]
        assert trigger["metadata"]["consumerGroup"] == values["services"][stage]["consumerGroup"]
        assert trigger["metadata"]["bootstrapServers"] == bootstrap
        # KEDA owns the replica count: a fixed one would be reset on every upgrade.
        assert "replicas" not in production_render.named("Deployment", f"vigil-{stage}")["spec"]
    hpa = production_render.named("HorizontalPodAutoscaler", "vigil-api")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_stream_stage_topics_and_groups_follow_the_topic_prefix(tools: Tools) -> None:
    result = helm_template(
        tools, "--set", "config.kafka_topic_prefix=acme.", "--set", "serviceDefaults.keda.enabled=true"
    )
    assert result.returncode == 0, result.stderr
    triggers = [
        doc["spec"]["triggers"][0]["metadata"]
        for doc in yaml.safe_load_all(result.stdout)
        if doc and doc["kind"] == "ScaledObject"
    ]
    assert len(triggers) == len(STREAM_STAGES)
    assert all(t["topic"].startswith("acme.") and t["consumerGroup"].startswith("acme.") for t in triggers)


def test_stream_topics_match_core_topics(production_render: Rendered) -> None:
    values = load_yaml(CHART / "values.yaml")
    core = {spec.name: dict(spec.config) for spec in STREAM_TOPICS}
    assert {name: topic["config"] for name, topic in values["topics"].items()} == core
    strimzi = {doc["spec"]["topicName"]: doc for doc in production_render.of_kind("KafkaTopic")}
    assert set(strimzi) == set(core)
    for spec in STREAM_TOPICS:
        if spec.partitions is not None:
            assert strimzi[spec.name]["spec"]["partitions"] == spec.partitions
    for stage in STREAM_STAGES:
        assert values["services"][stage]["topic"] in core


def test_disruption_budgets_and_network_policies_select_every_stage(render: Rendered) -> None:
    for deployment in render.of_kind("Deployment"):
        labels = pod_labels(deployment)
        name = deployment["metadata"]["name"]
        pdbs = [p for p in render.of_kind("PodDisruptionBudget") if _selects(p["spec"]["selector"], labels)]
        policies = [n for n in render.of_kind("NetworkPolicy") if _selects(n["spec"]["podSelector"], labels)]
        assert len(pdbs) == 1, name
        assert len(policies) == 1, name
        ingress_ports = {port["port"] for rule in policies[0]["spec"]["ingress"] for port in rule["ports"]}
        assert ingress_ports == {"http" if name == "vigil-api" else "ops"}
        egress_ports = {port["port"] for rule in policies[0]["spec"]["egress"] for port in rule.get("ports", [])}
        assert {53, 5432, 9092, 443} <= egress_ports
    for workload in render.of_kind("CronJob") + render.of_kind("Job"):
        jobs_policy = render.named("NetworkPolicy", "vigil-jobs")
        assert _selects(jobs_policy["spec"]["podSelector"], pod_labels(workload))


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def test_services_expose_what_the_service_monitor_scrapes(production_render: Rendered) -> None:
    monitor = production_render.named("ServiceMonitor", "vigil")
    ports = {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]}
    scraped = [
        s
        for s in production_render.of_kind("Service")
        if _selects(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    assert {s["metadata"]["name"] for s in scraped} == {f"vigil-{stage}" for stage in STAGES}
    for service in scraped:
        assert {port["name"] for port in service["spec"]["ports"]} & ports, service["metadata"]["name"]
    ingress = production_render.named("Ingress", "vigil-api")
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "vigil-api"


# --- alert rules ---------------------------------------------------------------------------------


def test_chart_copy_of_the_alerting_rules_is_identical() -> None:
    if ALERTING_RULES.exists():
        assert CHART_ALERTING_RULES.read_bytes() == ALERTING_RULES.read_bytes(), (
            "copy alerting/prometheus-rules.yaml to helm/vigil/files/alerting-prometheus-rules.yaml"
        )
    else:
        assert not CHART_ALERTING_RULES.exists(), "the chart ships alerting rules the alerting service dropped"


def test_prometheus_rule_has_the_system_alerts_and_the_pipeline_alerts(production_render: Rendered) -> None:
    rule = production_render.named("PrometheusRule", "vigil")
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    if ALERTING_RULES.exists():
        system = {r["alert"] for g in load_yaml(ALERTING_RULES)["groups"] for r in g["rules"]}
        assert system <= alerts
    assert {
        "VigilConsumerLagHigh",
        "VigilConsumerStalled",
        "VigilDeadLetterRateHigh",
        "VigilApiErrorRateHigh",
    } <= alerts
    names = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(names) == len(set(names)), "duplicate alert names"


def test_the_api_status_page_probes_every_stage_where_it_serves_and_may_reach_it(
    render: Rendered, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = pod_spec(render.named("Deployment", "vigil-api"))["containers"][0]
    for name in [name for name in os.environ if name.startswith("VIGIL_")]:
        monkeypatch.delenv(name)
    for name, value in _container_env(render, api).items():
        monkeypatch.setenv(name, value)
    targets = load_settings().status_ops_targets  # as the API container parses its environment
    assert set(targets) == set(STREAM_STAGES)
    api_labels = pod_labels(render.named("Deployment", "vigil-api"))
    for stage in STREAM_STAGES:
        service = render.named("Service", f"vigil-{stage}")
        ops_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "ops")
        assert targets[stage] == f"http://vigil-{stage}:{ops_port}"  # the stage's headless Service
        policy = render.named("NetworkPolicy", f"vigil-{stage}")
        admitted = [
            rule
            for rule in policy["spec"]["ingress"]
            if any("podSelector" in peer and _selects(peer["podSelector"], api_labels) for peer in rule["from"])
        ]
        assert admitted and {port["port"] for port in admitted[0]["ports"]} == {"ops"}, stage
        stage_labels = pod_labels(render.named("Deployment", f"vigil-{stage}"))
        egress = render.named("NetworkPolicy", "vigil-api")["spec"]["egress"]
        assert any(
            any(_selects(peer["podSelector"], stage_labels) for peer in rule.get("to", []))
            and ops_port in {port["port"] for port in rule["ports"]}
            for rule in egress
        ), stage
