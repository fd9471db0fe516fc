"""Errors raised by the ML detectors (training, registry, serving, labels)."""

from __future__ import annotations

from detectors.errors import DetectorError


class MLError(DetectorError):
    """Base error of `detectors.ml`."""


class TrainingDataError(MLError):
    """The training data cannot make a model (no rows, no positive labels, unknown columns)."""


class LabelFileError(MLError):
    """A label file is unreadable or holds values that are not labels."""


class RegistryError(MLError):
    """A registry operation is impossible (unknown model, version or alias; nothing to roll back to)."""


class ModelUnavailableError(MLError):
    """A model cannot be loaded or does not reproduce its own recorded scores."""
