"""The cyclic garbage collector in long-running processes that must answer quickly (the API).

Such a process opts in by freezing once after start-up (`create_app(freeze_gc=True)`): from then on
the large long-lived structures it builds later (a feature state caught up from the stream, a model
loaded from the registry) are frozen too, so full collections never rescan them. Each rescan was a
pause of the whole process: 45-170 ms in the API with 150,000 followed events (docs/adr/0010).
"""

from __future__ import annotations

import gc


def freeze_long_lived(*, collect: bool = True) -> None:
    """Move everything alive now out of the collector's scans, if this process opted in.

    `collect=False` skips the full collection first (a pause of its own): the few garbage cycles
    pending at that moment are then kept, which is cheaper than stalling requests mid-serving.
    Processes that never froze (tests, tools) are left alone: frozen objects are never collected.
    """
    if not gc.get_freeze_count():
        return
    if collect:
        gc.collect()
    gc.freeze()
