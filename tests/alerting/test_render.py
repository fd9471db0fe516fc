"""Messages read well: Slack Block Kit and email pinned as golden files (VIGIL_UPDATE_GOLDEN=1 rewrites)."""

from __future__ import annotations

import html
import json
import os
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from alerting.channels.email import build_message
from alerting.model import NotificationContent, alert_from_anomaly
from alerting.policy import FlushPlan, GroupState, Member, build_content
from alerting.render import email_html, email_text, slack_blocks, webhook_body
from core.contracts import Severity
from tests.alerting.conftest import T0, make_anomaly

GOLDEN = Path(__file__).with_name("golden")


def _content() -> NotificationContent:
    members = []
    for index in range(1000):
        anomaly = make_anomaly(
            index,
            detector="card-testing" if index % 3 else "velocity-zscore",
            detected_at=T0 + timedelta(milliseconds=3 * index),
        )
        alert = alert_from_anomaly(anomaly, now=T0 + timedelta(seconds=10), active_for=timedelta(hours=1))
        members.append(
            Member(
                alert_id=alert.alert_id,
                severity=alert.severity,
                score=alert.score,
                labels=alert.labels,
                summary=alert.summary,
                starts_at=alert.starts_at,
                ends_at=alert.ends_at,
                notified_seq=None,
            )
        )
    group = GroupState(
        group_key='critical-slack/slack/{entity_id="m-1",entity_type="merchant",tenant_id="acme"}',
        route_id="critical-slack",
        receiver="slack",
        tenant_id="acme",
        labels={"tenant_id": "acme", "entity_type": "merchant", "entity_id": "m-1"},
        group_wait=timedelta(seconds=10),
        group_interval=timedelta(minutes=5),
        repeat_interval=timedelta(hours=4),
        seq=0,
        created_at=T0,
        next_flush_at=T0 + timedelta(seconds=10),
        last_notified_at=None,
    )
    plan = FlushPlan(kind="firing", include=tuple(members), active=1000, muted=0, next_flush_at=T0)
    return build_content(
        group=group,
        plan=plan,
        dedup_key=group.group_key + "#1",
        now=T0 + timedelta(seconds=10),
        public_url="https://vigil.example.com/",
        group_link="{public_url}/anomalies?tenant_id={tenant_id}&entity_type={entity_type}&entity_id={entity_id}",
        example_link="{public_url}/cases?tenant_id={tenant_id}&transaction_id={transaction_id}",
        examples=5,
    )


def _golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("VIGIL_UPDATE_GOLDEN") == "1":
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"missing golden file {path}; run with VIGIL_UPDATE_GOLDEN=1"
    assert actual == path.read_text(encoding="utf-8"), f"{name} changed; review, then VIGIL_UPDATE_GOLDEN=1"


def test_slack_block_kit_payload_matches_golden() -> None:
    payload = slack_blocks(_content())
    _golden("slack_critical_burst.json", json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    kinds = [block["type"] for block in payload["blocks"]]
    assert kinds[:2] == ["header", "section"] and kinds[-2:] == ["actions", "context"]
    assert len(payload["blocks"]) <= 50  # Slack's limit per message
    assert all(
        len(block["text"]["text"]) <= 3000
        for block in payload["blocks"]
        if block["type"] == "section" and "text" in block
    )


def test_email_text_and_html_match_golden() -> None:
    content = _content()
    _golden("email_critical_burst.txt", email_text(content))
    _golden("email_critical_burst.html", email_html(content))


def test_email_message_is_multipart_with_stable_message_id() -> None:
    content = _content()
    first = build_message(content, sender="vigil@example.com", to=["a@example.com", "b@example.com"])
    again = build_message(content, sender="vigil@example.com", to=["a@example.com", "b@example.com"])
    assert first["Message-ID"] == again["Message-ID"]  # a retried send is recognisably the same mail
    parsed = message_from_bytes(first.as_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["To"] == "a@example.com, b@example.com"


def test_counts_examples_and_links_are_right() -> None:
    content = _content()
    assert content.alert_count == 1000
    assert content.counts_by_detector == {"card-testing": 666, "velocity-zscore": 334}
    assert [e.score for e in content.examples] == sorted((e.score for e in content.examples), reverse=True)
    assert content.link == ("https://vigil.example.com/anomalies?tenant_id=acme&entity_type=merchant&entity_id=m-1")
    assert content.examples[0].link is not None and "transaction_id=tx-" in content.examples[0].link


@pytest.mark.parametrize("hostile", ["<!channel> & <b>", "a|b>c"])
def test_untrusted_text_cannot_inject_markup(hostile: str) -> None:
    content = _content().model_copy(update={"group_labels": {"entity_type": "merchant", "entity_id": hostile}})
    slack = json.dumps(slack_blocks(content))
    assert hostile not in slack and "&lt;" in slack
    rendered = email_html(content)
    assert hostile not in rendered and html.escape(hostile) in rendered


def test_webhook_body_is_versioned_json() -> None:
    body = webhook_body(_content())
    assert body["version"] == 1 and body["notification"]["alert_count"] == 1000
    assert NotificationContent.model_validate(body["notification"]) == _content()
    assert _content().severity is Severity.CRITICAL
