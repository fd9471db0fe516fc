"""The real local infrastructure for development, demos and tests."""

from vigil.stack.manager import Stack, StackStatus

__all__ = ["Stack", "StackStatus"]
