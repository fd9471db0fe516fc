"""core.memory: frozen only in processes that opted in (in a subprocess: freezing is process-wide)."""

from __future__ import annotations

import subprocess
import sys

_SCRIPT = """
import gc, sys
from core.memory import freeze_long_lived
if sys.argv[1] == "opted-in":
    gc.freeze()
before = gc.get_freeze_count()
kept = [[i] for i in range(50_000)]  # long-lived containers built after start-up
freeze_long_lived(collect=sys.argv[2] == "collect")
print(before, gc.get_freeze_count(), len(kept))
"""


def _run(mode: str, collect: str) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode, collect], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[0]), int(out[1])


def test_a_process_that_froze_at_start_up_freezes_what_it_built_later() -> None:
    for collect in ("collect", "no-collect"):
        before, after = _run("opted-in", collect)
        assert after >= before + 50_000, (collect, before, after)


def test_a_process_that_never_froze_is_left_alone() -> None:
    assert _run("not-opted-in", "collect") == (0, 0)
