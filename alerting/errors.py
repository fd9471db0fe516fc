"""Errors of the alerting package: one base, specific subclasses."""

from __future__ import annotations

from core.errors import VigilError


class AlertingError(VigilError):
    """Root of every error the alerting service raises on purpose."""


class AlertingConfigError(AlertingError):
    """The routes/receivers file is missing, malformed or names an unknown receiver or secret."""


class MatcherError(AlertingError):
    """A label matcher cannot be parsed (bad operator, label name or regular expression)."""


class SilenceError(AlertingError):
    """A silence cannot be created or expired (unknown id, bad time range, no matchers)."""
