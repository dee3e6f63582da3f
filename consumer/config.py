"""All runtime settings, read once at the edge from `BIRDWATCH_*` variables and `.env`."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "BIRDWATCH_"
SECRETS_DIR_VARIABLE = ENV_PREFIX + "SECRETS_DIR"
TFHUB_BIRDS_MODEL = "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1"
TFHUB_BIRDS_LITE_MODEL = "https://tfhub.dev/google/lite-model/aiy/vision/classifier/birds_V1/3"
BIRDS_LABELS = "https://www.gstatic.com/aihub/tfhub/labelmaps/aiy_birds_V1_labelmap.csv"


def _default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "birdwatch" / "models")


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class ProcessingGuarantee(StrEnum):
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    """Every knob of the service; see env.example for the meaning of each."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        frozen=True,
        extra="ignore",
        protected_namespaces=(),
    )

    # Model
    model_url: str = TFHUB_BIRDS_MODEL
    labels_url: str = BIRDS_LABELS
    model_cache_dir: str = Field(default_factory=_default_cache_dir)
    model_load_timeout_s: PositiveFloat = 600.0
    inference_threads: PositiveInt = Field(default_factory=lambda: os.cpu_count() or 1)

    # Batching and concurrency
    max_batch_size: PositiveInt = 32
    max_batch_delay_ms: Annotated[float, Field(ge=0)] = 50.0
    decode_threads: PositiveInt = Field(default_factory=lambda: os.cpu_count() or 1)
    max_in_flight: PositiveInt = 256

    # Image fetching
    fetch_concurrency: PositiveInt = 32
    fetch_timeout_s: PositiveFloat = 10.0
    fetch_retries: Annotated[int, Field(ge=0, le=10)] = 2
    max_image_bytes: PositiveInt = 20 * 1024 * 1024
    max_image_pixels: PositiveInt = 100_000_000
    allow_private_networks: bool = False

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: LogFormat = LogFormat.AUTO

    # Kafka service
    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    group_id: str = "birdwatch"
    instance_id: str | None = None
    input_topic: str = "bird-images"
    results_topic: str = "bird-predictions"
    dlq_topic: str = "bird-images.dlq"
    processing_guarantee: ProcessingGuarantee = ProcessingGuarantee.AT_LEAST_ONCE
    shutdown_timeout_s: PositiveFloat = 30.0
    revoke_timeout_s: PositiveFloat = 10.0
    commit_interval_ms: PositiveInt = 200
    session_timeout_ms: Annotated[int, Field(ge=1000)] = 10_000
    heartbeat_interval_ms: Annotated[int, Field(ge=100)] = Field(
        default=1000,
        description="How often a member heartbeats; members learn of a rebalance at their next "
        "heartbeat, so this bounds how long a join or a leave waits for the others. Below the "
        "session timeout.",
    )
    transaction_timeout_ms: Annotated[int, Field(ge=1000)] = 20_000
    summary_interval_s: PositiveFloat = 30.0
    http_port: Annotated[int, Field(ge=0, le=65535)] = 8080

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("instance_id", "kafka_sasl_mechanism", "kafka_ssl_cafile", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("heartbeat_interval_ms")
    @classmethod
    def _below_session_timeout(cls, value: int, info: ValidationInfo) -> int:
        session = info.data.get("session_timeout_ms")
        if session is not None and value >= session:
            raise ValueError(f"must be below BIRDWATCH_SESSION_TIMEOUT_MS ({session})")
        return value

    @property
    def cache_path(self) -> Path | None:
        """The model cache folder, or None when caching is off (empty setting)."""
        return Path(self.model_cache_dir).expanduser() if self.model_cache_dir else None


class SettingsError(ValueError):
    """A setting has a bad value; the message is one line naming the variable."""


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning validation errors into one readable `SettingsError`.

    With `BIRDWATCH_SECRETS_DIR` set (e.g. a mounted Kubernetes Secret), a setting may also come
    from the file of that folder named like its variable (`BIRDWATCH_KAFKA_SASL_PASSWORD`);
    the environment and `.env` win over such files.
    """
    secrets_dir = os.environ.get(SECRETS_DIR_VARIABLE) or None
    if secrets_dir is not None and not Path(secrets_dir).is_dir():
        raise SettingsError(f"{SECRETS_DIR_VARIABLE}: not a directory (got {secrets_dir!r})")
    try:
        return Settings(_secrets_dir=secrets_dir, **overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else "?"
            name = ENV_PREFIX + field.upper()
            problems.append(f"{name}: {err['msg']} (got {err.get('input')!r})")
        raise SettingsError("; ".join(problems)) from None
