"""Slack: incoming webhooks (httpx) and the Web API (slack-sdk), both Block Kit."""

from __future__ import annotations

import httpx
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from alerting.channels.base import DeliveryResult, http_status_result
from alerting.config import SlackApiReceiver, SlackWebhookReceiver
from alerting.model import NotificationContent
from alerting.render import slack_blocks
from alerting.retry import parse_retry_after


class SlackWebhookChannel:
    """POST a Block Kit message to an incoming-webhook URL."""

    def __init__(self, config: SlackWebhookReceiver) -> None:
        self.name = config.name
        self._url = config.webhook_url
        self._client = httpx.Client(timeout=config.timeout.total_seconds(), follow_redirects=False)

    def send(self, content: NotificationContent) -> DeliveryResult:
        try:
            response = self._client.post(self._url.get_secret_value(), json=slack_blocks(content))
        except httpx.HTTPError as exc:
            return DeliveryResult.retry(f"{type(exc).__name__}: {exc}")
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return http_status_result(response.status_code, response.text, retry_after)

    def close(self) -> None:
        self._client.close()


# Web API errors that a later attempt can fix; every other `error` code is permanent.
_TRANSIENT_ERRORS = frozenset({"ratelimited", "service_unavailable", "fatal_error", "internal_error"})


class SlackApiChannel:
    """`chat.postMessage` with a bot token; slack-sdk's own retries are off (we schedule retries)."""

    def __init__(self, config: SlackApiReceiver) -> None:
        self.name = config.name
        self._channel = config.channel
        self._client = WebClient(
            token=config.token.get_secret_value(),
            base_url=config.base_url or WebClient.BASE_URL,
            timeout=max(1, int(config.timeout.total_seconds())),
            retry_handlers=[],
        )

    def send(self, content: NotificationContent) -> DeliveryResult:
        message = slack_blocks(content)
        try:
            self._client.chat_postMessage(channel=self._channel, text=message["text"], blocks=message["blocks"])
        except SlackApiError as exc:
            status = int(exc.response.status_code)
            data = exc.response.data if isinstance(exc.response.data, dict) else {}
            error = str(data.get("error", "unknown_error"))
            retry_after = parse_retry_after(exc.response.headers.get("Retry-After"))
            detail = f"HTTP {status}: {error}"
            if status == 429 or status >= 500 or error in _TRANSIENT_ERRORS:
                return DeliveryResult.retry(detail, retry_after=retry_after)
            return DeliveryResult.failed(detail)
        except (SlackClientError, OSError) as exc:
            return DeliveryResult.retry(f"{type(exc).__name__}: {exc}")
        return DeliveryResult.sent()

    def close(self) -> None:
        """urllib opens a connection per call: nothing to release."""
