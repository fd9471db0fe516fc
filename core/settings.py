"""Runtime settings: one pydantic-settings class, built by `load_settings()`.

Nothing here reads the environment at import time; every process calls
`load_settings()` once at start and passes the result down explicitly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError

ENV_PREFIX = "VIGIL_"
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
_DEV_JWT_SECRET = "vigil-local-development-only-secret-change-me"  # noqa: S105 - refused outside development


class Settings(BaseSettings):
    """Every `VIGIL_*` variable; documented in README.md (Configuration)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = Field(
        "development", description="Deployment kind; production refuses development defaults."
    )
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Comma-separated Kafka bootstrap servers, host:port.")
    kafka_topic_prefix: str = Field(
        "", description="Prefix for every topic name (lets tests and tenants share a broker)."
    )
    kafka_partitions: int = Field(6, ge=1, le=1024, description="Partitions for topics Vigil creates.")
    kafka_replication_factor: int = Field(1, ge=1, le=10, description="Replication for topics Vigil creates.")
    database_url: str = Field(
        "postgresql+psycopg://vigil:vigil@127.0.0.1:5433/vigil",
        description="SQLAlchemy URL of PostgreSQL/TimescaleDB (psycopg 3 driver).",
    )
    database_pool_size: int = Field(5, ge=1, le=100, description="Connections kept per process.")
    anomaly_writer_connections: int = Field(
        2,
        ge=1,
        le=16,
        description="Connections a detector service's anomaly writer stores a large batch over, in parallel "
        "(each its own PostgreSQL backend; a batch of fewer than 1,000 anomalies uses one).",
    )
    mlflow_tracking_uri: str = Field("http://127.0.0.1:5000", description="MLflow tracking server.")
    api_host: str = Field("127.0.0.1", description="Interface the API binds to.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port of the API and dashboard.")
    public_url: str = Field("http://127.0.0.1:8000", description="Dashboard URL used in alert links.")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Port for /metrics, /healthz, /readyz of stream services (0 = off)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["json", "text"] = Field("json", description="Log line format.")
    batch_size: int = Field(5000, ge=1, le=100_000, description="Max messages per consumer micro-batch.")
    batch_timeout_ms: int = Field(200, ge=1, le=60_000, description="Max wait to fill a micro-batch.")
    failpoint_pause_before_commit_seconds: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="Testing only: detectors pause this long between a batch's durable effects and its offset "
        "commit, so a kill -9 test can land in that window. Keep 0 in production.",
    )
    max_message_bytes: int = Field(
        65_536, ge=1024, le=10_485_760, description="Larger raw transactions are dead-lettered."
    )
    display_timezone: str = Field("UTC", description="IANA zone for 'today' in dashboard figures.")
    jwt_secret: SecretStr = Field(
        SecretStr(_DEV_JWT_SECRET), description="HS256 key for Vigil-issued tokens (development only)."
    )
    jwt_private_key_file: Path | None = Field(None, description="PEM RSA private key for RS256 tokens (production).")
    jwt_issuer: str = Field("vigil", description="`iss` of Vigil-issued tokens; required on every token.")
    jwt_audience: str = Field("vigil-api", description="`aud` required on every token.")
    jwt_ttl_seconds: int = Field(900, ge=60, le=86_400, description="Lifetime of issued access tokens.")
    oidc_jwks_url: str | None = Field(None, description="JWKS URL of an external OIDC provider (optional).")
    oidc_issuer: str | None = Field(None, description="Expected `iss` of external OIDC tokens.")
    # --- api (additive: owned by the API area) ---
    jwt_previous_public_key_files: list[Path] = Field(
        default_factory=list,
        description="PEM public keys of retired signing keys still accepted until their tokens expire "
        "(JSON list; key rotation by `kid`).",
    )
    jwt_leeway_seconds: int = Field(
        30, ge=0, le=120, description="Clock skew tolerated on `exp`/`nbf`/`iat` (bounded on purpose)."
    )
    oidc_audience: str | None = Field(None, description="Expected `aud` of OIDC tokens (default: jwt_audience).")
    oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256"], description="Signature algorithms accepted from the OIDC provider."
    )
    oidc_roles_claim: str = Field("roles", description="OIDC claim holding Vigil roles (list of strings).")
    oidc_tenants_claim: str = Field("tenants", description="OIDC claim holding tenant ids (list of strings).")
    oidc_jwks_cache_seconds: int = Field(
        300, ge=10, le=86_400, description="How long a fetched OIDC JWKS is trusted before refetching."
    )
    api_max_body_bytes: int = Field(
        1_048_576, ge=1024, le=104_857_600, description="Largest request body (413 above), except batches."
    )
    api_max_batch_bytes: int = Field(
        4_194_304,
        ge=1024,
        le=104_857_600,
        description="Largest body of POST /v1/transactions:batch (413 above).",
    )
    api_rate_limit_per_second: float = Field(
        100.0, gt=0, le=100_000, description="Sustained requests per second allowed per client (429 above)."
    )
    api_rate_limit_burst: int = Field(200, ge=1, le=1_000_000, description="Requests a client may burst.")
    api_login_attempts_per_minute: int = Field(
        20, ge=1, le=10_000, description="Token requests per minute per source address (brute-force guard)."
    )
    api_statement_timeout_ms: int = Field(
        10_000, ge=100, le=600_000, description="PostgreSQL statement timeout for API queries."
    )
    decision_review_threshold: float = Field(
        50.0, ge=0, le=100, description="Score (0-100) from which POST /v1/score answers `review`."
    )
    decision_decline_threshold: float = Field(
        80.0, ge=0, le=100, description="Score (0-100) from which POST /v1/score answers `decline`."
    )
    web_dist_dir: Path = Field(
        Path("web/dist"), description="Built dashboard served at / by the API when the folder exists."
    )
    state_dir: Path = Field(Path(".vigil"), description="Local state: stack data, logs, service state.")
    zscore_threshold: float = Field(
        2.5, ge=1.5, le=4.0, description="Default σ at which the mean/σ z-scores warn (1.5-4.0)."
    )
    zscore_critical: float = Field(
        7.0, ge=2.0, le=20.0, description="σ at which statistical detectors report critical."
    )
    statistical_config_file: Path | None = Field(
        None, description="YAML of per-tenant/entity statistical thresholds (docs/detectors.md)."
    )
    alerting_config_file: Path | None = Field(
        None,
        description="YAML or JSON file of alert routes, receivers, inhibition and system-alert "
        "thresholds (see docs/alerting.md); unset = built-in defaults. Secrets come from VIGIL_* env.",
    )
    alerting_consumer_group: str = Field(
        "vigil-alerting", min_length=1, description="Kafka consumer group of `vigil run alerting`."
    )
    # --- ml (additive: owned by detectors/ml) ---
    ml_model_names: list[str] = Field(
        default_factory=lambda: ["vigil-unsupervised", "vigil-supervised"],
        description="Registered MLflow models `vigil run detect-ml` serves (JSON list).",
    )
    ml_serving_alias: str = Field("champion", min_length=1, description="Registry alias detect-ml serves.")
    ml_experiment: str = Field("vigil-training", min_length=1, description="MLflow experiment of training runs.")
    ml_reload_seconds: float = Field(
        30.0, gt=0, le=3600, description="How often detect-ml checks whether the served alias moved."
    )
    ml_label_delay_days: float = Field(
        7.0,
        ge=0,
        le=180,
        description="Days a label needs to mature (chargebacks): newer transactions are left out of supervised "
        "training, and labels recorded after the cutoff are never used.",
    )
    ml_warmup_days: float = Field(
        30.0, ge=0, le=90, description="Transaction history replayed before --from so features start warm."
    )
    ml_contamination: float = Field(
        0.005, gt=0, lt=0.5, description="Share of training rows an unsupervised model flags (warning band)."
    )
    ml_operating_recall: float = Field(
        0.8, gt=0, lt=1, description="Recall a supervised model's warning threshold aims at on held-out data."
    )
    ml_train_threads: int = Field(
        1, ge=1, le=256, description="Native (OpenMP/BLAS) threads while training; more only on dedicated cores."
    )
    ml_breaker_failures: int = Field(
        2, ge=1, le=100, description="Consecutive registry or model failures before a model is reported degraded."
    )
    ml_breaker_max_backoff_seconds: float = Field(
        30.0, gt=0, le=3600, description="Longest wait between probes of a failing registry (exponential backoff)."
    )
    score_history_rows: int = Field(
        500,
        ge=1,
        le=100_000,
        description="POST /v1/score: newest stored transactions read per entity (account, card, merchant, ...).",
    )
    score_state: Literal["follow", "replay"] = Field(
        "follow",
        description=(
            "POST /v1/score features: `follow` keeps the stream's feature state in the API (restored from the "
            "newest features snapshot, then tx.valid) and replays stored history only until it has caught up; "
            "`replay` always replays stored history."
        ),
    )
    refresh_ttl_seconds: int = Field(
        8 * 3_600, ge=300, le=90 * 86_400, description="Lifetime of a dashboard refresh-token family (seconds)."
    )
    refresh_cookie_secure: bool = Field(
        True, description="Mark the refresh cookie Secure (turn off only for local plain-http development)."
    )
    status_ops_targets: dict[str, str] = Field(
        default_factory=lambda: {
            "ingest": "http://127.0.0.1:9101",
            "features": "http://127.0.0.1:9102",
            "detect-statistical": "http://127.0.0.1:9103",
            "detect-rules": "http://127.0.0.1:9104",
            "detect-ml": "http://127.0.0.1:9105",
            "alerting": "http://127.0.0.1:9106",
        },
        description="GET /v1/system/status: service name -> base URL of its ops server (/readyz), as JSON.",
    )
    status_consumer_groups: dict[str, str] = Field(
        default_factory=dict,
        description="GET /v1/system/status: service name -> consumer group, where a service runs with --group (JSON).",
    )
    status_probe_timeout_seconds: float = Field(
        0.5, gt=0, le=10, description="Timeout of each /readyz probe made by GET /v1/system/status."
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_is_host_ports(cls, value: str) -> str:
        servers = [part.strip() for part in value.split(",") if part.strip()]
        if not servers:
            raise ValueError("expected host:port[,host:port...]")
        for server in servers:
            match = _HOST_PORT.match(server)
            if match is None or not 0 < int(match.group(2)) < 65536:
                raise ValueError(f"{server!r} is not host:port with a port from 1 to 65535")
        return ",".join(servers)

    @field_validator("database_url")
    @classmethod
    def _database_is_postgres(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgresql+psycopg://")):
            raise ValueError("expected a postgresql+psycopg:// URL")
        return value.replace("postgresql://", "postgresql+psycopg://", 1)

    @field_validator("display_timezone")
    @classmethod
    def _timezone_exists(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _decision_thresholds_ordered(self) -> Settings:
        if self.decision_review_threshold > self.decision_decline_threshold:
            raise ValueError("decision_review_threshold must not exceed decision_decline_threshold")
        return self

    @model_validator(mode="after")
    def _no_development_secrets_in_production(self) -> Settings:
        if self.environment == "production" and (
            self.jwt_private_key_file is None and self.jwt_secret.get_secret_value() == _DEV_JWT_SECRET
        ):
            raise ValueError(
                "jwt_secret: the development default is refused in production; "
                "set VIGIL_JWT_SECRET or VIGIL_JWT_PRIVATE_KEY_FILE"
            )
        return self

    def topic(self, name: str) -> str:
        """Full topic name with the configured prefix."""
        return f"{self.kafka_topic_prefix}{name}"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and overrides), or raise one clear `ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            variable = f"{ENV_PREFIX}{field.upper()}" if field != "settings" else "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{variable}: {message}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
