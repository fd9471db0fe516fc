from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.settings import load_settings


def test_defaults_match_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VIGIL_KAFKA_BOOTSTRAP", "VIGIL_DATABASE_URL", "VIGIL_MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.database_url.endswith("@127.0.0.1:5433/vigil")
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:5000"


def test_environment_variables_are_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_KAFKA_BOOTSTRAP", "broker-1:9092, broker-2:19092")
    monkeypatch.setenv("VIGIL_BATCH_SIZE", "250")
    settings = load_settings()
    assert settings.kafka_bootstrap == "broker-1:9092,broker-2:19092"
    assert settings.batch_size == 250


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("VIGIL_KAFKA_BOOTSTRAP", "notahost:abc", "VIGIL_KAFKA_BOOTSTRAP"),
        ("VIGIL_KAFKA_BOOTSTRAP", "host:70000", "port from 1 to 65535"),
        ("VIGIL_DATABASE_URL", "mysql://x", "VIGIL_DATABASE_URL"),
        ("VIGIL_BATCH_SIZE", "0", "VIGIL_BATCH_SIZE"),
        ("VIGIL_DISPLAY_TIMEZONE", "Mars/Olympus", "unknown IANA time zone"),
        ("VIGIL_LOG_LEVEL", "LOUD", "VIGIL_LOG_LEVEL"),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert expected in message
    assert variable in message
    assert "\n" not in message


def test_production_refuses_the_development_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_ENVIRONMENT", "production")
    monkeypatch.delenv("VIGIL_JWT_SECRET", raising=False)
    with pytest.raises(ConfigError, match="VIGIL_JWT_SECRET"):
        load_settings()
    monkeypatch.setenv("VIGIL_JWT_SECRET", "a-real-secret-from-the-vault-0123456789")
    assert load_settings().environment == "production"


def test_topic_prefix_is_applied() -> None:
    assert load_settings(kafka_topic_prefix="acme.").topic("tx.raw") == "acme.tx.raw"
