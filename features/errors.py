"""Errors of the features package."""

from __future__ import annotations

from core.errors import VigilError


class FeaturesError(VigilError):
    """The features stage cannot go on (bad state, bad input file, incompatible topics)."""
