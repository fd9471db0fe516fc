"""Each channel plugin against a local stand-in (HTTP for Slack/webhooks) or a real SMTP server."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

from pydantic import TypeAdapter

from alerting.channels import DeliveryStatus, build_channel, verify
from alerting.config import ReceiverConfig
from tests.alerting.conftest import SMTP_PASSWORD, SMTP_USER, FakeHttp, SmtpServer
from tests.alerting.test_render import _content

RECEIVER: TypeAdapter[Any] = TypeAdapter(ReceiverConfig)


def receiver(**fields: Any) -> Any:
    return RECEIVER.validate_python(fields)


def test_slack_webhook_classifies_responses(fake_http: FakeHttp) -> None:
    channel = build_channel(receiver(name="slack", type="slack_webhook", webhook_url=f"{fake_http.url}/hook"))
    fake_http.script = [
        (429, {"Retry-After": "2"}, b"rate_limited"),
        (500, {}, b"oops"),
        (404, {}, b"no_service"),
    ]
    results = [channel.send(_content()) for _ in range(4)]
    assert [r.status for r in results] == [
        DeliveryStatus.RETRY,
        DeliveryStatus.RETRY,
        DeliveryStatus.FAILED,
        DeliveryStatus.SENT,
    ]
    assert results[0].retry_after == 2.0 and results[1].retry_after is None
    assert fake_http.requests[-1].json()["blocks"][0]["type"] == "header"


def test_slack_webhook_unreachable_is_retried() -> None:
    channel = build_channel(receiver(name="slack", type="slack_webhook", webhook_url="http://127.0.0.1:9/hook"))
    result = channel.send(_content())
    assert result.status is DeliveryStatus.RETRY and result.error


def test_slack_web_api_posts_blocks_with_the_bot_token(fake_http: FakeHttp) -> None:
    channel = build_channel(
        receiver(
            name="slack-api", type="slack_api", token="xoxb-test", channel="#fraud", base_url=f"{fake_http.url}/api/"
        )
    )
    fake_http.default = (200, {"Content-Type": "application/json"}, b'{"ok": true, "ts": "1.2"}')
    fake_http.script = [
        (429, {"Retry-After": "3", "Content-Type": "application/json"}, b'{"ok": false, "error": "ratelimited"}'),
        (200, {"Content-Type": "application/json"}, b'{"ok": false, "error": "channel_not_found"}'),
    ]
    results = [channel.send(_content()) for _ in range(3)]
    assert [r.status for r in results] == [DeliveryStatus.RETRY, DeliveryStatus.FAILED, DeliveryStatus.SENT]
    assert results[0].retry_after == 3.0 and "channel_not_found" in (results[1].error or "")
    request = fake_http.requests[-1]
    assert request.path == "/api/chat.postMessage"
    assert request.headers["authorization"] == "Bearer xoxb-test"
    body = request.json() if request.headers["content-type"].startswith("application/json") else None
    if body is None:  # slack-sdk form-encodes some calls; both carry the same fields
        form = parse_qs(request.body.decode())
        body = {"channel": form["channel"][0], "blocks": json.loads(form["blocks"][0])}
    assert body["channel"] == "#fraud" and body["blocks"][0]["type"] == "header"


def test_webhook_is_signed_and_carries_an_idempotency_key(fake_http: FakeHttp) -> None:
    channel = build_channel(receiver(name="hook", type="webhook", url=f"{fake_http.url}/in", secret="k3y"))
    content = _content()
    assert channel.send(content).status is DeliveryStatus.SENT
    request = fake_http.requests[0]
    assert request.headers["idempotency-key"] == content.dedup_key
    assert verify(b"k3y", request.headers["x-vigil-signature"], request.body, now=time.time())
    assert not verify(b"wrong", request.headers["x-vigil-signature"], request.body, now=time.time())
    assert not verify(b"k3y", request.headers["x-vigil-signature"], request.body + b" ", now=time.time())


def _email(smtp: SmtpServer, **overrides: Any) -> Any:
    fields = {
        "name": "email",
        "type": "email",
        "host": smtp.host,
        "port": smtp.port,
        "ca_file": str(smtp.ca_file),
        "username": SMTP_USER,
        "password": SMTP_PASSWORD,
        "sender": "vigil@example.com",
        "to": ["oncall@example.com"],
    }
    return build_channel(receiver(**{**fields, **overrides}))


def test_email_goes_over_starttls_with_auth_as_text_and_html(smtp_server: SmtpServer) -> None:
    result = _email(smtp_server).send(_content())
    assert result.status is DeliveryStatus.SENT, result.error
    message = smtp_server.messages[0]
    assert smtp_server.tls_sessions == 1
    assert message["Subject"] == "[CRITICAL] 1,000 anomalies for merchant m-1 (tenant acme)"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and "Top 5 by score" in text.get_content()
    assert html is not None and "<table" in html.get_content()


def test_smtp_4xx_is_retried_and_5xx_is_not(smtp_server: SmtpServer) -> None:
    channel = _email(smtp_server)
    smtp_server.reply = "451 4.3.0 Try again later"
    transient = channel.send(_content())
    smtp_server.reply = "550 5.7.1 Rejected by policy"
    permanent = channel.send(_content())
    assert transient.status is DeliveryStatus.RETRY and "451" in (transient.error or "")
    assert permanent.status is DeliveryStatus.FAILED and "550" in (permanent.error or "")
    assert smtp_server.messages == []
