"""The real pipeline for the dashboard's end-to-end run: services as subprocesses on a test's topics.

Every process gets the test's database and topic prefix through VIGIL_* variables, so a
concurrent `make demo` or another pytest session never shares data, offsets or the port.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine, text

from tests.waiting import wait_for
from core.settings import Settings

VIGIL = str(Path(sys.executable).with_name("vigil"))
STOP_SECONDS = 12.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Pipeline:
    """Stream services, the API (serving web/dist) and live generated traffic, for one test."""

    settings: Settings
    log_dir: Path
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "VIGIL_ENVIRONMENT": "test",
            "VIGIL_DATABASE_URL": s.database_url,
            "VIGIL_KAFKA_TOPIC_PREFIX": s.kafka_topic_prefix,
            "VIGIL_KAFKA_PARTITIONS": str(s.kafka_partitions),
            "VIGIL_LOG_FORMAT": "text",
            "VIGIL_API_PORT": str(self.port),
            "VIGIL_PUBLIC_URL": self.url,
            "VIGIL_WEB_DIST_DIR": str(Path(__file__).resolve().parents[2] / "web" / "dist"),
            "VIGIL_STATE_DIR": str(self.log_dir / "state"),
        }

    def run(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([VIGIL, *args], env=self.env(), capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"vigil {' '.join(args)} failed: {done.stderr[-2000:]}"
        return done.stdout

    def start(self, name: str, args: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        log = (self.log_dir / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [VIGIL, *args], env={**self.env(), **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def start_services(self) -> None:
        prefix = self.settings.kafka_topic_prefix
        groups = {"detect-statistical": f"{prefix}e2e-statistical", "detect-rules": f"{prefix}e2e-rules"}
        # Each stream service serves /readyz on its own port; the API's status endpoint probes them.
        ops = {name: free_port() for name in ("ingest", "features", "detect-statistical", "detect-rules", "alerting")}

        def with_ops(name: str) -> dict[str, str]:
            return {"VIGIL_METRICS_PORT": str(ops[name])}

        self.start("ingest", ["run", "ingest", "--instance-id", f"{prefix}e2e"], env=with_ops("ingest"))
        self.start("features", ["run", "features"], env=with_ops("features"))
        self.start(
            "detect-statistical",
            ["run", "detect-statistical", "--group", groups["detect-statistical"]],
            env=with_ops("detect-statistical"),
        )
        self.start(
            "detect-rules",
            ["run", "detect-rules", "--group", groups["detect-rules"], "--poll-seconds", "1"],
            env=with_ops("detect-rules"),
        )
        self.start("alerting", ["run", "alerting"], env=with_ops("alerting"))
        self.start(
            "api",
            ["run", "api", "--port", str(self.port)],
            env={
                "VIGIL_STATUS_OPS_TARGETS": json.dumps(
                    {name: f"http://127.0.0.1:{port}" for name, port in ops.items()}
                ),
                "VIGIL_STATUS_CONSUMER_GROUPS": json.dumps(groups),
                # The browser talks plain http to 127.0.0.1 here.
                "VIGIL_REFRESH_COOKIE_SECURE": "false",
            },
        )

    def send_malformed(self, count: int) -> None:
        """Messages ingestion must dead-letter (the health page then shows a real DLQ depth)."""
        from confluent_kafka import Producer

        from core.kafka import client_config
        from core.topics import TX_RAW

        producer = Producer(client_config(self.settings))
        for i in range(count):
            producer.produce(self.settings.topic(TX_RAW), value=b'{"not": "a transaction"' + str(i).encode())
        assert producer.flush(10) == 0

    def generate_history(self, *, accounts: int, days: float, transactions: int) -> None:
        """Back-dated traffic so entities have history when the live stream starts."""
        start = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.run(
            "generate",
            "--to", "kafka", "--seed", "7", "--accounts", str(accounts), "--merchants", "25",
            "--start", start, "--rate", str(transactions / 4), "--duration", "4",
            "--event-rate", str(transactions / (days * 86_400)), "--fraud-rate", "0.02",
            timeout=120,
        )  # fmt: skip

    def generate_live(self, *, accounts: int, rate: float) -> None:
        self.start(
            "generate-live",
            ["generate", "--to", "kafka", "--seed", "8", "--accounts", str(accounts), "--merchants", "25",
             "--rate", str(rate), "--duration", "0", "--fraud-rate", "0.08"],
        )  # fmt: skip

    def api_ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def assert_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
        if dead:
            tails = {name: self.tail(name) for name in dead}
            raise AssertionError(f"pipeline processes exited: {dead}\n{tails}")

    def tail(self, name: str, lines: int = 25) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def anomalies_today(engine: Engine, tenant: str) -> int:
    with engine.connect() as connection:
        count = connection.execute(
            text(
                "SELECT count(*) FROM anomalies WHERE tenant_id = :tenant "
                "AND event_time >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
            ),
            {"tenant": tenant},
        ).scalar_one()
        return int(count)


def open_cases(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM cases WHERE status = 'open'")).scalar_one())
