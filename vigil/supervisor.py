"""Run several `vigil run <service>` processes together (local demo), stopping them cleanly.

In Kubernetes every service is its own Deployment; locally `vigil run all`
starts them as child processes, forwards SIGTERM/SIGINT, and restarts a child
that fails (with backoff) so one crash does not take the demo down. A child
that exits 0 has finished its job (e.g. a bounded generator) and is not restarted.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS: Final = 10.0
MAX_BACKOFF_SECONDS: Final = 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        stdout = self.log_path.open("ab") if self.log_path else None
        self.process = subprocess.Popen(
            self.argv,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout else None,
            env={**os.environ, **self.env},
        )
        if stdout:
            stdout.close()
        log.info("started %s (pid %d)", self.name, self.process.pid)


def vigil_argv(*args: str) -> list[str]:
    """argv that runs this same `vigil` installation."""
    return [sys.executable, "-m", "vigil", *args]


def supervise(
    services: Sequence[tuple[str, list[str]]],
    *,
    log_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    until: float | None = None,
) -> int:
    """Run children until SIGTERM/SIGINT (or `until`, a monotonic deadline); returns an exit code."""
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    children = [
        Child(name, argv, log_path=(log_dir / f"{name}.log") if log_dir else None, env=dict(env or {}))
        for name, argv in services
    ]
    for child in children:
        child.start()
    try:
        while not stopping and (until is None or time.monotonic() < until):
            time.sleep(0.5)
            for child in children:
                if child.process is not None and child.process.poll() is not None:
                    code = child.process.returncode
                    if code == 0:
                        log.info("%s finished", child.name)
                        child.process = None
                        child.next_start = float("inf")
                        continue
                    child.restarts += 1
                    delay = min(2.0**child.restarts, MAX_BACKOFF_SECONDS)
                    log.warning("%s exited with %s; restarting in %.0fs", child.name, code, delay)
                    child.process = None
                    child.next_start = time.monotonic() + delay
                elif child.process is None and time.monotonic() >= child.next_start:
                    child.start()
    finally:
        _terminate(children)
    return 0


def _terminate(children: Sequence[Child]) -> None:
    running = [c for c in children if c.process is not None and c.process.poll() is None]
    for child in running:
        assert child.process is not None
        child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in running:
        assert child.process is not None
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0fs; killing it", child.name, STOP_GRACE_SECONDS)
            child.process.kill()
            child.process.wait()
