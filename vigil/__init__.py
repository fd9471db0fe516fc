"""Composition root: the `vigil` command and the local stack."""
