"""Install, start, stop and check the local stack: Kafka (KRaft), PostgreSQL 15, MLflow.

Everything lives under the state directory (`.vigil/` by default): data, logs
and one pid file per process. `down` stops exactly the processes `up` started,
by pid, never by name. Kafka jars come from Maven Central into a cache outside
the repository; PostgreSQL comes from Debian's packages.
"""

from __future__ import annotations

import base64
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from core.errors import StackError
from core.settings import Settings

log = logging.getLogger(__name__)

KAFKA_VERSION: Final = "4.1.1"
KAFKA_POM: Final = Path(__file__).with_name("kafka-pom.xml")
PG_BIN: Final = Path("/usr/lib/postgresql/15/bin")
KAFKA_PORT: Final = 9092
CONTROLLER_PORT: Final = 9093
PG_PORT: Final = 5433
MLFLOW_PORT: Final = 5000
DB_USER: Final = "vigil"
DB_PASSWORD: Final = "vigil"  # noqa: S105 - local loopback-only development cluster
DATABASES: Final = ("vigil", "vigil_test", "mlflow")


def cache_dir() -> Path:
    return Path(os.environ.get("VIGIL_CACHE_DIR", Path.home() / ".cache" / "vigil"))


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    name: str
    running: bool
    healthy: bool
    detail: str


@dataclass(frozen=True, slots=True)
class StackStatus:
    components: tuple[ComponentStatus, ...]

    @property
    def healthy(self) -> bool:
        return all(c.healthy for c in self.components)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _wait_for(check: object, *, what: str, timeout: float, log_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.5)
    tail = ""
    if log_file is not None and log_file.exists():
        tail = "\n" + "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
    raise StackError(f"{what} did not become healthy within {timeout:.0f}s{tail}")


class Stack:
    """The local stack rooted at `settings.state_dir`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.state_dir.resolve()
        self.logs = self.root / "logs"
        self.pids = self.root / "pids"

    # -- public ---------------------------------------------------------------------------

    def up(self) -> StackStatus:
        """Install what is missing and start every component (idempotent)."""
        for directory in (self.root, self.logs, self.pids):
            directory.mkdir(parents=True, exist_ok=True)
        self._start_postgres()
        self._start_kafka()
        self._start_mlflow()
        return self.status()

    def down(self) -> list[str]:
        """Stop what `up` started (by pid file); returns the components stopped."""
        stopped = []
        for name in ("mlflow", "kafka"):
            if self._stop_pidfile(name):
                stopped.append(name)
        if self._stop_postgres():
            stopped.append("postgres")
        return stopped

    def status(self) -> StackStatus:
        return StackStatus(
            (
                self._status("postgres", PG_PORT, self._pg_pid()),
                self._status("kafka", KAFKA_PORT, self._read_pid("kafka")),
                self._status("mlflow", MLFLOW_PORT, self._read_pid("mlflow"), http_path="/health"),
            )
        )

    # -- pid files ------------------------------------------------------------------------

    def _pidfile(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    def _read_pid(self, name: str) -> int | None:
        try:
            pid = int(self._pidfile(name).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def _stop_pidfile(self, name: str, timeout: float = 15.0) -> bool:
        pid = self._read_pid(name)
        self._pidfile(name).unlink(missing_ok=True)
        if pid is None:
            return False
        # Each component was started as its own process group, so children go too.
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        return True

    def _spawn(self, name: str, argv: list[str], *, env: dict[str, str] | None = None) -> int:
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **(env or {})},
                cwd=self.root,
            )
        self._pidfile(name).write_text(str(process.pid))
        return process.pid

    def _status(self, name: str, port: int, pid: int | None, http_path: str | None = None) -> ComponentStatus:
        open_ = _port_open(port)
        healthy = open_
        if open_ and http_path:
            healthy = _http_ok(f"http://127.0.0.1:{port}{http_path}")
        if pid:
            detail = f"pid {pid}, 127.0.0.1:{port}"
        elif healthy:
            detail = f"external: 127.0.0.1:{port} answers but was not started by this checkout (reused, never stopped)"
        else:
            detail = f"stopped (port {port} {'in use' if open_ else 'free'})"
        return ComponentStatus(name, pid is not None or healthy, healthy, detail)

    def _reuse(self, what: str, port: int, healthy: Callable[[], bool]) -> bool:
        """True when another checkout's healthy component already serves the port (we reuse, never stop it)."""
        if not _port_open(port):
            return False
        if healthy():
            log.warning(
                "reusing the %s already on 127.0.0.1:%d (started elsewhere; `down` will not stop it)", what, port
            )
            return True
        raise StackError(f"port {port} is taken by something that is not a healthy {what}")

    # -- PostgreSQL -----------------------------------------------------------------------

    @property
    def _pg_data(self) -> Path:
        return self.root / "postgres" / "data"

    def _pg_pid(self) -> int | None:
        try:
            pid = int((self._pg_data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _pid_alive(pid) else None

    def _as_pg_owner(self, argv: list[str]) -> list[str]:
        # initdb and postgres refuse to run as root; run them as the `postgres` user then.
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _ensure_postgres_installed(self) -> None:
        if (PG_BIN / "initdb").exists():
            return
        if os.geteuid() != 0:
            raise StackError("PostgreSQL 15 is missing: run `sudo apt-get install -y postgresql-15`")
        log.info("installing postgresql-15 from Debian packages")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql-15"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        # Debian starts a system cluster on 5432 on install; ours is private on 5433, leave it be.

    def _start_postgres(self) -> None:
        self._ensure_postgres_installed()
        if self._pg_pid() is not None or self._reuse("PostgreSQL", PG_PORT, _postgres_answers):
            return
        pg_root = self._pg_data.parent
        socket_dir = pg_root / "socket"
        socket_dir.mkdir(parents=True, exist_ok=True)
        owner = "postgres" if os.geteuid() == 0 else None
        if owner:
            entry = pwd.getpwnam(owner)
            for path in (pg_root, socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            # The postgres user must be able to reach the data directory through the repo path.
            for parent in pg_root.parents:
                if parent == Path("/"):
                    break
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
        fresh = not (self._pg_data / "PG_VERSION").exists()
        if fresh:
            subprocess.run(
                self._as_pg_owner(
                    [
                        str(PG_BIN / "initdb"),
                        "-D",
                        str(self._pg_data),
                        "-U",
                        "postgres",
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        log_file = pg_root / "postgres.log"
        options = (
            f"-p {PG_PORT} -k {socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            "-c shared_buffers=256MB -c fsync=on -c synchronous_commit=on"
        )
        subprocess.run(
            self._as_pg_owner(
                [
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self._pg_data),
                    "-l",
                    str(log_file),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self._psql_setup(socket_dir)

    def _psql(self, socket_dir: Path, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            self._as_pg_owner(
                [
                    "psql",
                    "-h",
                    str(socket_dir),
                    "-p",
                    str(PG_PORT),
                    "-U",
                    "postgres",
                    "-d",
                    database,
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-tAc",
                    sql,
                ]
            ),
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout.strip()

    def _psql_setup(self, socket_dir: Path) -> None:
        if not self._psql(socket_dir, f"SELECT 1 FROM pg_roles WHERE rolname = '{DB_USER}'"):
            self._psql(socket_dir, f"CREATE ROLE {DB_USER} LOGIN CREATEDB PASSWORD '{DB_PASSWORD}'")
        for database in DATABASES:
            if not self._psql(socket_dir, f"SELECT 1 FROM pg_database WHERE datname = '{database}'"):
                self._psql(socket_dir, f"CREATE DATABASE {database} OWNER {DB_USER}")

    def _stop_postgres(self) -> bool:
        if self._pg_pid() is None:
            return False
        subprocess.run(
            self._as_pg_owner([str(PG_BIN / "pg_ctl"), "-D", str(self._pg_data), "-m", "fast", "-w", "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
        )
        return True

    # -- Kafka ----------------------------------------------------------------------------

    def kafka_libs(self) -> Path:
        """Resolve the broker jars with Maven into the cache (once)."""
        libs = cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"
        marker = libs / ".complete"
        if marker.exists():
            return libs
        if shutil.which("mvn") is None:
            raise StackError("Maven (mvn) is needed to fetch Kafka from Maven Central; install `maven`")
        libs.mkdir(parents=True, exist_ok=True)
        log.info("resolving Apache Kafka %s from Maven Central", KAFKA_VERSION)
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(KAFKA_POM),
                "dependency:copy-dependencies",
                f"-Dkafka.version={KAFKA_VERSION}",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={libs}",
            ],
            check=True,
        )
        marker.write_text(KAFKA_VERSION)
        return libs

    def _kafka_config(self) -> Path:
        kafka_root = self.root / "kafka"
        data = kafka_root / "data"
        data.mkdir(parents=True, exist_ok=True)
        properties = kafka_root / "server.properties"
        properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{CONTROLLER_PORT}",
                    f"listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT},CONTROLLER://127.0.0.1:{CONTROLLER_PORT}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{KAFKA_PORT}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={data}",
                    f"num.partitions={self.settings.kafka_partitions}",
                    # Topics are created by the project with explicit partitions, never by accident.
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.hours=168",
                    "message.max.bytes=10485760",
                ]
            )
            + "\n"
        )
        log4j = kafka_root / "log4j2.properties"
        log4j.write_text(
            "status = warn\nappender.console.type = Console\nappender.console.name = STDOUT\n"
            "appender.console.layout.type = PatternLayout\n"
            "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\nrootLogger.appenderRef.stdout.ref = STDOUT\n"
            "logger.kafka.name = kafka\nlogger.kafka.level = WARN\n"
            "logger.apache.name = org.apache.kafka\nlogger.apache.level = WARN\n"
        )
        if not (data / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(
                [
                    "java",
                    "-cp",
                    f"{self.kafka_libs()}/*",
                    f"-Dlog4j2.configurationFile={log4j}",
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(properties),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        return properties

    def _start_kafka(self) -> None:
        if self._read_pid("kafka") is not None or self._reuse("Kafka", KAFKA_PORT, self._kafka_ready):
            from core.kafka import ensure_topics
            from core.topics import STREAM_TOPICS

            ensure_topics(self.settings, STREAM_TOPICS)
            return
        libs = self.kafka_libs()
        properties = self._kafka_config()
        self._spawn(
            "kafka",
            [
                "java",
                "-Xms256m",
                "-Xmx768m",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={properties.with_name('log4j2.properties')}",
                f"-Dkafka.logs.dir={self.logs}",
                "-cp",
                f"{libs}/*",
                "kafka.Kafka",
                str(properties),
            ],
        )
        _wait_for(self._kafka_ready, what="Kafka", timeout=90, log_file=self.logs / "kafka.log")
        from core.kafka import ensure_topics
        from core.topics import STREAM_TOPICS

        ensure_topics(self.settings, STREAM_TOPICS)

    def _kafka_ready(self) -> bool:
        if not _port_open(KAFKA_PORT):
            return False
        from confluent_kafka.admin import AdminClient

        try:
            admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{KAFKA_PORT}", "log_level": 0})
            metadata = admin.list_topics(timeout=2)
        except Exception:  # not answering yet
            return False
        return bool(metadata.brokers)

    # -- MLflow ---------------------------------------------------------------------------

    def _start_mlflow(self) -> None:
        mlflow_up = lambda: _http_ok(f"http://127.0.0.1:{MLFLOW_PORT}/health")  # noqa: E731
        if self._read_pid("mlflow") is not None or self._reuse("MLflow", MLFLOW_PORT, mlflow_up):
            return
        artifacts = self.root / "mlflow" / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        mlflow = Path(sys.executable).with_name("mlflow")
        backend = f"postgresql+psycopg://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{PG_PORT}/mlflow"
        self._spawn(
            "mlflow",
            [
                str(mlflow),
                "server",
                "--backend-store-uri",
                backend,
                "--artifacts-destination",
                str(artifacts),
                "--host",
                "127.0.0.1",
                "--port",
                str(MLFLOW_PORT),
                "--workers",
                "1",
            ],
            # Job execution (GenAI evaluation jobs, which Vigil does not use) adds a job runner and eight
            # huey consumer processes: 10 processes instead of 2, and 25 s to start instead of 15 here.
            env={"MLFLOW_TRACKING_URI": "", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONUNBUFFERED": "1"},
        )
        _wait_for(
            lambda: _http_ok(f"http://127.0.0.1:{MLFLOW_PORT}/health"),
            what="MLflow",
            timeout=180,
            log_file=self.logs / "mlflow.log",
        )


def _postgres_answers() -> bool:
    import psycopg

    try:
        with psycopg.connect(
            host="127.0.0.1", port=PG_PORT, user=DB_USER, password=DB_PASSWORD, dbname="vigil", connect_timeout=2
        ) as connection:
            return connection.execute("SELECT 1").fetchone() == (1,)
    except psycopg.Error:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback health URL
            return bool(response.status == 200)
    except OSError:
        return False
