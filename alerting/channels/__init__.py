"""Channel plugins: one typed interface (`Channel.send -> DeliveryResult`), one factory per type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from alerting.channels.base import Channel, DeliveryResult, DeliveryStatus
from alerting.channels.email import EmailChannel
from alerting.channels.slack import SlackApiChannel, SlackWebhookChannel
from alerting.channels.webhook import WebhookChannel, sign, verify
from alerting.config import AlertingConfig, ReceiverConfig

# Receiver `type` -> plugin. A new channel is a config model plus one entry here.
CHANNEL_TYPES: Final[dict[str, Callable[[Any], Channel]]] = {
    "slack_webhook": SlackWebhookChannel,
    "slack_api": SlackApiChannel,
    "email": EmailChannel,
    "webhook": WebhookChannel,
}


def build_channel(config: ReceiverConfig) -> Channel:
    """The plugin for one receiver's config."""
    return CHANNEL_TYPES[config.type](config)


def build_channels(config: AlertingConfig) -> dict[str, Channel]:
    """Every configured receiver's channel, by receiver name."""
    return {receiver.name: build_channel(receiver) for receiver in config.receivers}


__all__ = [
    "CHANNEL_TYPES",
    "Channel",
    "DeliveryResult",
    "DeliveryStatus",
    "EmailChannel",
    "SlackApiChannel",
    "SlackWebhookChannel",
    "WebhookChannel",
    "build_channel",
    "build_channels",
    "sign",
    "verify",
]
