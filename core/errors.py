"""Base error hierarchy shared by every Vigil package.

Each package derives its own errors from `VigilError` so callers can catch one
family without swallowing programming errors.
"""

from __future__ import annotations


class VigilError(Exception):
    """Root of every error Vigil raises on purpose."""


class ConfigError(VigilError):
    """Settings are missing or invalid; the message names the variable."""


class ContractError(VigilError):
    """An event does not match its versioned contract."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StackError(VigilError):
    """The local infrastructure could not be installed, started or stopped."""


class KafkaDeliveryError(VigilError):
    """A produced message was not acknowledged by the broker."""


class BackpressureError(VigilError):
    """A sink cannot accept more work now; the caller should pause, not drop."""
