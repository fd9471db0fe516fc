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
from urllib.parse import urlsplit

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
    child_env: Mapping[str, Mapping[str, str]] | None = None,
    until: float | None = None,
) -> int:
    """Run children until SIGTERM/SIGINT (or `until`, a monotonic deadline); returns an exit code.

    `env` goes to every child; `child_env[name]` only to that child (e.g. its own ops port).
    """
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {signum: signal.signal(signum, _stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    children = [
        Child(
            name,
            argv,
            log_path=(log_dir / f"{name}.log") if log_dir else None,
            env={**(env or {}), **(child_env or {}).get(name, {})},
        )
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
        for signum, handler in previous.items():
            signal.signal(signum, handler)
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


def ops_ports(status_targets: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """`VIGIL_METRICS_PORT` per local service, read from the targets the API's status page probes.

    One source of truth: a service started by `vigil run all` serves its /readyz exactly where
    GET /v1/system/status looks for it. Targets on other hosts are not ours to start.
    """
    ports: dict[str, dict[str, str]] = {}
    for name, url in status_targets.items():
        parsed = urlsplit(url)
        if parsed.hostname in ("127.0.0.1", "localhost", "::1") and parsed.port:
            ports[name] = {"VIGIL_METRICS_PORT": str(parsed.port)}
    return ports
