"""Polling for tests that drive real services: wait for a condition, fail naming what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    check: Callable[[], object], *, timeout: float = 90.0, what: str = "condition", every: float = 0.25
) -> None:
    """Call `check` every `every` seconds until it is truthy; a test failure naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
