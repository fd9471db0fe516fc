"""Errors raised by the detectors package."""

from __future__ import annotations

from core.errors import VigilError


class DetectorError(VigilError):
    """Base error of the detectors package."""


class DetectorConfigError(DetectorError):
    """A detector configuration file is invalid."""
