"""The one interface every channel implements, and what a delivery attempt reports."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from alerting.model import NotificationContent


class DeliveryStatus(StrEnum):
    SENT = "sent"
    RETRY = "retry"  # transient: try again later (Retry-After, 5xx, SMTP 4xx, network)
    FAILED = "failed"  # permanent: retrying cannot help (bad token, 4xx, SMTP 5xx)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """Outcome of one attempt; `retry_after` is the server's requested wait in seconds."""

    status: DeliveryStatus
    error: str | None = None
    retry_after: float | None = None

    @classmethod
    def sent(cls, note: str | None = None) -> DeliveryResult:
        return cls(DeliveryStatus.SENT, note)

    @classmethod
    def retry(cls, error: str, *, retry_after: float | None = None) -> DeliveryResult:
        return cls(DeliveryStatus.RETRY, error, retry_after)

    @classmethod
    def failed(cls, error: str) -> DeliveryResult:
        return cls(DeliveryStatus.FAILED, error)


class Channel(Protocol):
    """A notification channel plugin: one attempt per `send`, never raising for delivery problems."""

    name: str

    def send(self, content: NotificationContent) -> DeliveryResult:
        """Deliver one message once; classify failures as retry or failed."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def http_status_result(status: int, body: str, retry_after: float | None) -> DeliveryResult:
    """Shared HTTP classification: 2xx sent; 408/429/5xx retry (429 honours Retry-After); else failed."""
    if 200 <= status < 300:
        return DeliveryResult.sent()
    detail = f"HTTP {status}: {body[:200]}".strip()
    if status in (408, 425, 429) or status >= 500:
        return DeliveryResult.retry(detail, retry_after=retry_after)
    return DeliveryResult.failed(detail)
