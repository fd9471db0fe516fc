"""Decisions: synchronous scoring and what ingest clients may read about their transactions."""
