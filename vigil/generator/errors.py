"""Errors of the generator: one base, specific subclasses."""

from __future__ import annotations

from core.errors import VigilError


class GeneratorError(VigilError):
    """Root of every error the synthetic generator raises on purpose."""


class GeneratorConfigError(GeneratorError):
    """The generator was asked for something impossible (negative rate, unknown format...)."""


class SinkError(GeneratorError):
    """Generated transactions could not be delivered (HTTP refused them, file not writable...)."""
