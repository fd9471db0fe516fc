"""Registered models: list versions and aliases, promote and roll back (admin)."""
