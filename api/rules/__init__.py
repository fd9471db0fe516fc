"""Analyst rules over HTTP: CRUD on immutable versions (DB), validation and backtests (RuleEngine port)."""
