"""Routes, receivers, inhibition and thresholds: one validated pydantic model.

The file (YAML or JSON, `VIGIL_ALERTING_CONFIG_FILE`) holds no secrets: a
receiver names the `VIGIL_*` variable of each secret as `<field>_env` and the
loader reads it into a `SecretStr`. A literal secret in the file is refused.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from alerting.errors import AlertingConfigError
from alerting.matchers import Matcher, coerce_matcher

DEFAULT_CONFIG_FILE: Final = Path(__file__).with_name("default-config.yaml")
ENV_PREFIX: Final = "VIGIL_"
SECRET_FIELDS: Final = frozenset({"webhook_url", "token", "password", "secret"})
# Fields that may stay unset (an SMTP relay without authentication): a missing variable leaves them None.
OPTIONAL_ENV_FIELDS: Final = frozenset({"username", "password"})
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_NAME = r"^[a-z0-9][a-z0-9_.-]{0,99}$"


def parse_duration(value: Any) -> timedelta:
    """`timedelta` from seconds or Prometheus-style text (`500ms`, `30s`, `5m`, `1h30m`, `7d`)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or text like 30s, 5m, 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        if text and _DURATION_PART.sub("", text) == "":
            seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
            return timedelta(seconds=seconds)
    raise ValueError(f"{value!r} is not a duration (use seconds or text like 30s, 5m, 1h30m, 7d)")


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
MatcherList = Annotated[list[Matcher], BeforeValidator(lambda raw: [coerce_matcher(m) for m in raw or []])]
LabelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GroupTiming(_Strict):
    """Alertmanager's timers and grouping, inherited by routes that do not set them."""

    group_by: list[LabelName] = Field(default_factory=lambda: ["tenant_id", "entity_type", "entity_id"])
    group_wait: Duration = Field(timedelta(seconds=30), description="Wait to batch a new group's alerts.")
    group_interval: Duration = Field(timedelta(minutes=5), description="Wait before announcing new alerts.")
    repeat_interval: Duration = Field(timedelta(hours=4), description="Remind while alerts stay active.")


class Route(_Strict):
    """Alerts matching every matcher go to `receiver` (None = no notification)."""

    id: Annotated[str, Field(pattern=_NAME)]
    matchers: MatcherList = Field(default_factory=list)
    receiver: str | None
    group_by: list[LabelName] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    continue_: bool = Field(False, alias="continue", description="Keep matching later routes.")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def timing(self, defaults: GroupTiming) -> GroupTiming:
        return GroupTiming(
            group_by=self.group_by if self.group_by is not None else defaults.group_by,
            group_wait=self.group_wait if self.group_wait is not None else defaults.group_wait,
            group_interval=self.group_interval if self.group_interval is not None else defaults.group_interval,
            repeat_interval=(self.repeat_interval if self.repeat_interval is not None else defaults.repeat_interval),
        )


class InhibitRule(_Strict):
    """While a source alert is active, target alerts with the same `equal` labels are muted."""

    source_matchers: MatcherList
    target_matchers: MatcherList
    equal: list[LabelName] = Field(default_factory=list)


class _Receiver(_Strict):
    name: Annotated[str, Field(pattern=_NAME)]
    optional: bool = Field(
        False, description="When its secrets are not set, log its notifications as suppressed, not fail."
    )
    # Short on purpose: one slow receiver must not hold up the others or a SIGTERM (10 s budget).
    timeout: Duration = Field(timedelta(seconds=5), le=timedelta(seconds=8))


class SlackWebhookReceiver(_Receiver):
    """Slack incoming webhook (Block Kit payload)."""

    type: Literal["slack_webhook"]
    webhook_url: SecretStr


class SlackApiReceiver(_Receiver):
    """Slack Web API `chat.postMessage` through slack-sdk, with a bot token."""

    type: Literal["slack_api"]
    token: SecretStr
    channel: str = Field(min_length=1)
    base_url: str | None = Field(None, description="Web API base URL; unset = Slack's own.")


class EmailReceiver(_Receiver):
    """SMTP with STARTTLS (aiosmtplib), HTML + plain text."""

    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(min_length=3)
    to: list[str] = Field(min_length=1)
    ca_file: Path | None = Field(None, description="CA bundle for the server certificate.")

    @field_validator("to", mode="before")
    @classmethod
    def _split_addresses(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class WebhookReceiver(_Receiver):
    """Generic JSON webhook, HMAC-SHA256 signed (`X-Vigil-Signature: t=<unix>,v1=<hex>`)."""

    type: Literal["webhook"]
    url: SecretStr
    secret: SecretStr = Field(description="Signing key; receivers verify with it.")


ReceiverConfig = Annotated[
    SlackWebhookReceiver | SlackApiReceiver | EmailReceiver | WebhookReceiver, Field(discriminator="type")
]


class Links(_Strict):
    """Dashboard URLs in messages; `{public_url}` and alert labels/summary fields are filled in."""

    group: str = "{public_url}/anomalies?tenant_id={tenant_id}&entity_type={entity_type}&entity_id={entity_id}"
    example: str = "{public_url}/cases?tenant_id={tenant_id}&transaction_id={transaction_id}"


class SystemAlerts(_Strict):
    """Alerts about Vigil itself, evaluated by the alerting service."""

    enabled: bool = True
    severity: Literal["info", "warning", "critical"] = "critical"
    anomalies_per_hour_ceiling: int = Field(50, ge=1, description="More anomalies in an hour: alert.")
    dlq_growth_threshold: int = Field(100, ge=1, description="More dead letters within dlq_window: alert.")
    dlq_window: Duration = timedelta(minutes=15)
    check_interval: Duration = timedelta(seconds=60)


class Delivery(_Strict):
    """Retries: exponential backoff with jitter, capped; `Retry-After` is honoured as a floor."""

    max_attempts: int = Field(8, ge=1, le=100)
    backoff_initial: Duration = timedelta(seconds=1)
    backoff_max: Duration = timedelta(minutes=5)
    lease: Duration = Field(timedelta(seconds=60), description="A claimed send is retried after this.")
    batch: int = Field(20, ge=1, le=1000, description="Notifications claimed per dispatch round.")


class AlertingConfig(_Strict):
    """The whole alerting configuration (see docs/alerting.md for a commented example)."""

    defaults: GroupTiming = Field(default_factory=GroupTiming)
    routes: list[Route] = Field(default_factory=list)
    default_receiver: str | None = Field(None, description="For alerts no route matched (None = drop).")
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    unconfigured_receivers: dict[str, str] = Field(
        default_factory=dict, description="Optional receivers left out for missing secrets: name -> why."
    )
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    alert_active_for: Duration = Field(
        timedelta(hours=1), description="An alert counts as active (reminders, inhibition) this long."
    )
    alert_retention: Duration = Field(
        timedelta(days=8), description="Seen alerts kept for replay dedup; longer than topic retention."
    )
    examples: int = Field(5, ge=1, le=20, description="Top alerts listed per message.")
    tick_interval: Duration = Field(timedelta(milliseconds=500), description="Flush/dispatch cadence.")
    links: Links = Field(default_factory=Links)
    system: SystemAlerts = Field(default_factory=SystemAlerts)
    delivery: Delivery = Field(default_factory=Delivery)

    @model_validator(mode="after")
    def _references_exist(self) -> AlertingConfig:
        names = [receiver.name for receiver in self.receivers]
        duplicates = {name for name in names if names.count(name) > 1}
        if duplicates:
            raise ValueError(f"receiver names must be unique: {sorted(duplicates)}")
        known = set(names) | set(self.unconfigured_receivers)
        route_ids = [route.id for route in self.routes]
        if len(set(route_ids)) != len(route_ids):
            raise ValueError("route ids must be unique")
        for route in self.routes:
            if route.receiver is not None and route.receiver not in known:
                raise ValueError(f"route {route.id!r} names unknown receiver {route.receiver!r}")
        if self.default_receiver is not None and self.default_receiver not in known:
            raise ValueError(f"default_receiver names unknown receiver {self.default_receiver!r}")
        return self

    def receiver(self, name: str) -> ReceiverConfig | None:
        return next((receiver for receiver in self.receivers if receiver.name == name), None)


def _resolve_receiver(raw: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    """Replace `<field>_env` references by their values; returns the receiver and what is missing."""
    resolved: dict[str, Any] = {}
    missing: list[str] = []
    for key, value in raw.items():
        if key in SECRET_FIELDS:
            raise AlertingConfigError(
                f"receiver {raw.get('name')!r}: {key} is a secret; name its VIGIL_* variable as {key}_env"
            )
        if not key.endswith("_env"):
            resolved[key] = value
            continue
        field, variable = key.removesuffix("_env"), str(value)
        if not variable.startswith(ENV_PREFIX):
            raise AlertingConfigError(
                f"receiver {raw.get('name')!r}: {key} must name a {ENV_PREFIX}* variable, not {variable!r}"
            )
        if environ.get(variable):
            resolved[field] = environ[variable]
        elif field not in OPTIONAL_ENV_FIELDS:
            missing.append(variable)
    return resolved, ", ".join(missing)


def build_config(raw: Mapping[str, Any], *, environ: Mapping[str, str] | None = None) -> AlertingConfig:
    """Validate a parsed config document, reading secrets from `environ` (default: the process env)."""
    env = os.environ if environ is None else environ
    if not isinstance(raw, Mapping):
        raise AlertingConfigError("alerting config must be a mapping at the top level")
    document = dict(raw)
    receivers: list[dict[str, Any]] = []
    unconfigured: dict[str, str] = {}
    for item in document.get("receivers") or []:
        if not isinstance(item, Mapping):
            raise AlertingConfigError("each receiver must be a mapping")
        resolved, missing = _resolve_receiver(item, env)
        if missing and resolved.get("optional"):
            unconfigured[str(resolved.get("name"))] = f"not configured: set {missing}"
            continue
        if missing:
            raise AlertingConfigError(f"receiver {item.get('name')!r}: missing environment variable {missing}")
        receivers.append(resolved)
    document["receivers"] = receivers
    document["unconfigured_receivers"] = unconfigured
    try:
        return AlertingConfig.model_validate(document)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'config'}: {error['msg']}" for error in exc.errors()
        ]
        raise AlertingConfigError("invalid alerting config: " + "; ".join(problems)) from None


def load_config(path: Path | None = None, *, environ: Mapping[str, str] | None = None) -> AlertingConfig:
    """Read a YAML/JSON config file (None = the built-in defaults) and validate it."""
    source = path or DEFAULT_CONFIG_FILE
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise AlertingConfigError(f"cannot read alerting config {source}: {exc.strerror}") from None
    try:
        raw = json.loads(text) if source.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise AlertingConfigError(f"cannot parse alerting config {source}: {exc}") from None
    return build_config(raw or {}, environ=environ)
