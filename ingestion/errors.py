"""Errors of the ingestion package: one base, specific subclasses."""

from __future__ import annotations

from core.errors import VigilError


class IngestionError(VigilError):
    """Root of every error the ingestion service raises on purpose."""


class StoreConflictError(IngestionError):
    """The table changed under the batch (a row appeared that the duplicate check did not see)."""


class FatalIngestionError(IngestionError):
    """The service cannot continue (e.g. its transactional producer was fenced by a newer instance)."""


class DeadLetterError(IngestionError):
    """Dead letters cannot be read or replayed (unknown topic, malformed selection)."""
