"""Settings: environment, .env, validation errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.config import LogFormat, ProcessingGuarantee, SettingsError, load_settings


def test_defaults_are_the_tf_hub_model_and_safe_fetching() -> None:
    s = load_settings()
    assert s.model_url == "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1"
    assert s.labels_url.endswith("aiy_birds_V1_labelmap.csv")
    assert s.allow_private_networks is False
    assert s.max_batch_size == 32
    assert s.log_format is LogFormat.AUTO
    assert s.processing_guarantee is ProcessingGuarantee.AT_LEAST_ONCE
    assert s.cache_path is not None
    assert s.cache_path.name == "models"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIRDWATCH_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("BIRDWATCH_ALLOW_PRIVATE_NETWORKS", "true")
    monkeypatch.setenv("BIRDWATCH_LOG_LEVEL", "debug")
    monkeypatch.setenv("BIRDWATCH_MODEL_CACHE_DIR", "")
    monkeypatch.setenv("BIRDWATCH_INSTANCE_ID", "")
    s = load_settings()
    assert s.max_batch_size == 8
    assert s.allow_private_networks is True
    assert s.log_level == "DEBUG"
    assert s.cache_path is None
    assert s.instance_id is None


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    # The autouse fixture runs each test in its own tmp_path.
    (tmp_path / ".env").write_text("BIRDWATCH_FETCH_CONCURRENCY=3\nBIRDWATCH_LOG_FORMAT=console\n")
    s = load_settings()
    assert s.fetch_concurrency == 3
    assert s.log_format is LogFormat.CONSOLE


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BIRDWATCH_MAX_BATCH_SIZE", "0"),
        ("BIRDWATCH_MAX_BATCH_SIZE", "many"),
        ("BIRDWATCH_FETCH_TIMEOUT_S", "-1"),
        ("BIRDWATCH_LOG_FORMAT", "xml"),
        ("BIRDWATCH_LOG_LEVEL", "chatty"),
        ("BIRDWATCH_ALLOW_PRIVATE_NETWORKS", "perhaps"),
        ("BIRDWATCH_PROCESSING_GUARANTEE", "at_most_once"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(name)
    assert "\n" not in message
    assert repr(value).lower() in message.lower()


def test_password_is_not_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIRDWATCH_KAFKA_SASL_PASSWORD", "hunter2-secret")
    s = load_settings()
    assert "hunter2-secret" not in repr(s)
    assert s.kafka_sasl_password is not None
    assert s.kafka_sasl_password.get_secret_value() == "hunter2-secret"


def test_the_heartbeat_must_be_below_the_session_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().heartbeat_interval_ms == 1000
    monkeypatch.setenv("BIRDWATCH_SESSION_TIMEOUT_MS", "6000")
    monkeypatch.setenv("BIRDWATCH_HEARTBEAT_INTERVAL_MS", "6000")
    with pytest.raises(SettingsError, match=r"BIRDWATCH_HEARTBEAT_INTERVAL_MS: .*below"):
        load_settings()
