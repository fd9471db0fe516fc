"""Fast, pure tests: matchers, config loading, routing, the grouping policy, retry timing, rule file."""

from __future__ import annotations

import random
import re
import typing
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from alerting.config import build_config, load_config, parse_duration
from alerting.errors import AlertingConfigError, MatcherError
from alerting.matchers import Matcher, parse_matcher
from alerting.model import AlertSummary, alert_from_anomaly
from alerting.policy import GroupState, Member, next_flush_for_new_alert, plan_flush
from alerting.retry import backoff_delay, parse_retry_after
from alerting.routing import MAX_GROUP_KEY, group_key_for, match_routes
from core.contracts import Severity
from core.metrics import MetricName
from tests.alerting.conftest import T0, make_anomaly

# --- matchers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ("severity=critical", {"severity": "warning"}, False),
        ('severity!="info"', {"severity": "warning"}, True),
        ('severity=~"warn|crit.*"', {"severity": "critical"}, True),
        ('severity=~"crit"', {"severity": "critical"}, False),  # anchored, as in Alertmanager
        ('entity_id!~"m-.*"', {"entity_id": "c-1"}, True),
        ('merchant_id=""', {}, True),  # a missing label is the empty string
    ],
)
def test_matchers_follow_alertmanager_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


@pytest.mark.parametrize("bad", ["severity", "1abc=x", 'severity=~"("', "=x"])
def test_bad_matchers_are_refused_with_a_clear_error(bad: str) -> None:
    with pytest.raises(MatcherError, match="cannot parse matcher"):
        parse_matcher(bad)


@given(
    label=st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
    op=st.sampled_from(["=", "!=", "=~", "!~"]),
    value=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
)
def test_matcher_text_form_round_trips(label: str, op: str, value: str) -> None:
    if op in ("=~", "!~"):
        value = re.escape(value)
    matcher = Matcher(label=label, op=op, value=value)
    assert parse_matcher(str(matcher)) == matcher


# --- configuration --------------------------------------------------------------------------------


def test_default_config_routes_critical_to_slack_and_email_warning_to_digest_info_nowhere() -> None:
    config = load_config(environ={})
    anomaly = make_anomaly(1)
    labels = alert_from_anomaly(anomaly, now=T0, active_for=timedelta(hours=1)).labels
    assert [m.receiver for m in match_routes(config, labels)] == ["slack", "email"]
    assert [m.receiver for m in match_routes(config, {**labels, "severity": "warning"})] == ["email"]
    digest = match_routes(config, {**labels, "severity": "warning"})[0]
    assert digest.timing.group_by == ["tenant_id"] and digest.timing.group_interval == timedelta(hours=1)
    assert match_routes(config, {**labels, "severity": "info"}) == []
    assert set(config.unconfigured_receivers) == {"slack", "email"}  # no secrets in the environment


def test_secrets_come_from_vigil_env_and_never_from_the_file(tmp_path: Path) -> None:
    document = {
        "routes": [{"id": "all", "receiver": "hook"}],
        "receivers": [{"name": "hook", "type": "webhook", "url": "http://127.0.0.1:1/x", "secret_env": "VIGIL_HOOK"}],
    }
    path = tmp_path / "alerting.yaml"
    path.write_text(yaml.safe_dump(document))
    config = load_config(path, environ={"VIGIL_HOOK": "s3cret"})
    receiver = config.receiver("hook")
    assert receiver is not None and receiver.type == "webhook"
    assert receiver.secret.get_secret_value() == "s3cret" and "s3cret" not in repr(config)

    with pytest.raises(AlertingConfigError, match="missing environment variable VIGIL_HOOK"):
        load_config(path, environ={})
    document["receivers"][0] = {"name": "hook", "type": "webhook", "url": "http://x", "secret": "inline"}
    with pytest.raises(AlertingConfigError, match="secret is a secret"):
        build_config(document, environ={})
    document["receivers"][0] = {"name": "hook", "type": "webhook", "url": "http://x", "secret_env": "HOME"}
    with pytest.raises(AlertingConfigError, match="must name a VIGIL_"):
        build_config(document, environ={"HOME": "/root"})


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(AlertingConfigError, match="unknown receiver 'nope'"):
        build_config({"routes": [{"id": "r", "receiver": "nope"}]}, environ={})
    with pytest.raises(AlertingConfigError, match="group_wait"):
        build_config({"defaults": {"group_wait": "soon"}}, environ={})


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), (2, 2), ("7d", 604800)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


def test_long_group_keys_are_hashed_to_fit_the_dedup_key() -> None:
    key = group_key_for("route", "slack", {"entity_id": "x" * 400})
    assert len(key) <= MAX_GROUP_KEY and "sha256:" in key
    assert key == group_key_for("route", "slack", {"entity_id": "x" * 400})


# --- the grouping policy (pure, on explicit times) ------------------------------------------------


def _group(**overrides: object) -> GroupState:
    values: dict[str, typing.Any] = {
        "group_key": "g",
        "route_id": "r",
        "receiver": "slack",
        "tenant_id": "acme",
        "labels": {"tenant_id": "acme"},
        "group_wait": timedelta(seconds=30),
        "group_interval": timedelta(minutes=5),
        "repeat_interval": timedelta(hours=4),
        "seq": 0,
        "created_at": T0,
        "next_flush_at": T0 + timedelta(seconds=30),
        "last_notified_at": None,
    }
    values.update(overrides)
    return GroupState(**values)


def _member(*, notified: int | None = None, ends_in: float = 3600) -> Member:
    return Member(
        alert_id=uuid.uuid4(),
        severity=Severity.CRITICAL,
        score=90.0,
        labels={"tenant_id": "acme"},
        summary=AlertSummary(title="t"),
        starts_at=T0,
        ends_at=T0 + timedelta(seconds=ends_in),
        notified_seq=notified,
    )


def test_new_alerts_fire_and_the_group_then_waits_for_repeat_or_expiry() -> None:
    members = [_member(), _member()]
    plan = plan_flush(_group(), members, now=T0 + timedelta(seconds=30), muted=set())
    assert plan.kind == "firing" and len(plan.include) == 2
    assert plan.next_flush_at == T0 + timedelta(hours=1)  # alerts expire before the 4 h reminder


def test_muted_alerts_stay_pending_and_are_rechecked_every_group_interval() -> None:
    member = _member()
    now = T0 + timedelta(seconds=30)
    plan = plan_flush(_group(), [member], now=now, muted={member.alert_id})
    assert plan.kind is None and plan.muted == 1
    assert plan.next_flush_at == now + timedelta(minutes=5)


def test_reminder_after_repeat_interval_only() -> None:
    group = _group(last_notified_at=T0, seq=1)
    members = [_member(notified=1, ends_in=6 * 3600)]
    early = plan_flush(group, members, now=T0 + timedelta(hours=3), muted=set())
    assert early.kind is None and early.next_flush_at == T0 + timedelta(hours=4)
    due = plan_flush(group, members, now=T0 + timedelta(hours=4), muted=set())
    assert due.kind == "reminder"


def test_a_group_with_only_expired_alerts_is_dropped() -> None:
    plan = plan_flush(_group(), [_member(ends_in=10)], now=T0 + timedelta(seconds=30), muted=set())
    assert plan.next_flush_at is None and plan.kind is None


def test_new_alert_timing_is_group_wait_first_then_group_interval() -> None:
    fresh = _group()
    assert next_flush_for_new_alert(fresh, now=T0 + timedelta(seconds=5)) == T0 + timedelta(seconds=30)
    notified = _group(last_notified_at=T0, next_flush_at=T0 + timedelta(hours=1))
    assert next_flush_for_new_alert(notified, now=T0 + timedelta(seconds=60)) == T0 + timedelta(minutes=5)
    assert next_flush_for_new_alert(notified, now=T0 + timedelta(minutes=50)) == T0 + timedelta(minutes=50)


# --- retry timing ---------------------------------------------------------------------------------


@given(attempt=st.integers(1, 30), seed=st.integers(0, 2**32))
def test_backoff_grows_exponentially_with_bounded_jitter(attempt: int, seed: int) -> None:
    delay = backoff_delay(attempt, initial=1.0, maximum=300.0, rng=random.Random(seed))
    step = min(300.0, 2.0 ** (attempt - 1))
    assert step / 2 <= delay <= step


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Mon, 23 Nov 2026 09:00:10 GMT", now=T0) == 10.0


# --- Prometheus rules shipped for the chart -------------------------------------------------------


def test_prometheus_rules_parse_and_use_only_exported_metrics() -> None:
    path = Path(__file__).parents[2] / "alerting" / "prometheus-rules.yaml"
    document = yaml.safe_load(path.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert {"VigilAnomalyRateHigh", "VigilDeadLetterGrowth", "VigilDetectorDegraded"} <= names
    exported = set(typing.get_args(MetricName))
    for rule in rules:
        used = set(re.findall(r"\bvigil_[a-z_]+", rule["expr"]))
        assert used and used <= exported, f"{rule['alert']} uses unknown metrics {used - exported}"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
