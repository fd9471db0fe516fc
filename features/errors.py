"""Errors of the features package."""

from __future__ import annotations

from core.errors import VigilError


class FeaturesError(VigilError):
    """The features stage cannot go on (bad state, bad input file, incompatible topics)."""


class IncompatibleStateError(FeaturesError):
    """A stored state or snapshot was written by a version that keyed or laid out state differently.

    Not a fault: the stage and the follower start from the beginning of their input instead.
    """
