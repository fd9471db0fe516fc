"""Generic JSON webhook, signed so the receiver can trust it came from Vigil."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

import httpx
import orjson

from alerting.channels.base import DeliveryResult, http_status_result
from alerting.config import WebhookReceiver
from alerting.model import NotificationContent
from alerting.render import webhook_body
from alerting.retry import parse_retry_after

SIGNATURE_HEADER = "X-Vigil-Signature"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: the timestamp stops replays of old bodies."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, *, now: float, tolerance: float = 300.0) -> bool:
    """Receiver-side check of `sign` (documented for integrators; used by the tests)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


class WebhookChannel:
    """POST the notification as JSON with a signature and an `Idempotency-Key`."""

    def __init__(self, config: WebhookReceiver, *, clock: Callable[[], float] = time.time) -> None:
        self.name = config.name
        self._url = config.url
        self._secret = config.secret
        self._clock = clock
        self._client = httpx.Client(timeout=config.timeout.total_seconds(), follow_redirects=False)

    def send(self, content: NotificationContent) -> DeliveryResult:
        body = orjson.dumps(webhook_body(content))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "vigil-alerting",
            # Receivers dedup on this: a send retried after a lost response is the same notification.
            "Idempotency-Key": content.dedup_key,
            SIGNATURE_HEADER: sign(self._secret.get_secret_value().encode(), int(self._clock()), body),
        }
        try:
            response = self._client.post(self._url.get_secret_value(), content=body, headers=headers)
        except httpx.HTTPError as exc:
            return DeliveryResult.retry(f"{type(exc).__name__}: {exc}")
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return http_status_result(response.status_code, response.text, retry_after)

    def close(self) -> None:
        self._client.close()
