"""All runtime settings, read once at the edge from `BIRDWATCH_*` variables and `.env`."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "BIRDWATCH_"
SECRETS_DIR_VARIABLE = ENV_PREFIX + "SECRETS_DIR"
TFHUB_BIRDS_MODEL = "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1"
TFHUB_BIRDS_LITE_MODEL = "https://tfhub.dev/google/lite-model/aiy/vision/classifier/birds_V1/3"
KAGGLE_URL = "https://www.kaggle.com"
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
    model_url: str = Field(
        TFHUB_BIRDS_MODEL,
        description="TF Hub handle, Kaggle handle or model page URL, or a direct .tar.gz / "
        ".tflite URL; the backend is chosen by what is served",
    )
    model_sha256: str | None = Field(
        None,
        description="sha256 of the model download: another digest is refused, on download and "
        "in the cache; empty = not checked",
    )
    kaggle_url: str = Field(
        KAGGLE_URL,
        description="Base URL of Kaggle, where Kaggle handles and model pages are downloaded from",
    )
    labels_url: str = Field(BIRDS_LABELS, description="CSV label map (id,name), mapped by id")
    model_cache_dir: str = Field(
        default_factory=_default_cache_dir,
        description="Folder of downloaded models, keyed by URL; empty = no cache",
    )
    model_load_timeout_s: PositiveFloat = Field(
        600.0,
        description="Give up loading the model after this long (retrying transient failures)",
    )
    classify_model_retry_s: PositiveFloat = Field(
        30.0,
        description="birdwatch classify stops retrying a model or label map it cannot get "
        "(unreachable host, HTTP 5xx) after this long; serve retries until "
        "MODEL_LOAD_TIMEOUT_S.",
    )
    inference_threads: PositiveInt = Field(
        default_factory=lambda: os.cpu_count() or 1,
        description="Threads per inference call (default: the CPU count)",
    )

    # Batching and concurrency
    max_batch_size: PositiveInt = Field(32, description="Images per model call at most")
    max_batch_delay_ms: Annotated[float, Field(ge=0)] = Field(
        50.0, description="A batch closes this long after its first image at the latest"
    )
    decode_threads: PositiveInt = Field(
        default_factory=lambda: os.cpu_count() or 1,
        description="Image decoding threads (default: the CPU count)",
    )
    decode_memory_mib: PositiveInt = Field(
        256,
        description="Estimated memory that images being decoded may hold at once, whatever "
        "the number of decode threads; an image that alone needs more is too_large.",
    )
    max_in_flight: PositiveInt = Field(
        256, description="Records in flight before intake pauses (it resumes at half)"
    )

    # Image fetching
    fetch_concurrency: PositiveInt = Field(32, description="Concurrent image downloads")
    fetch_per_host: PositiveInt | None = Field(
        None,
        description="Download slots one image host may hold at once (default: half of "
        "FETCH_CONCURRENCY), so a slow host cannot starve the others.",
    )
    fetch_timeout_s: PositiveFloat = Field(10.0, description="Per download attempt")
    fetch_deadline_s: PositiveFloat = Field(
        20.0,
        description="Time for a whole image download: every attempt, redirect and wait "
        "between attempts.",
    )
    fetch_retries: Annotated[int, Field(ge=0, le=10)] = Field(
        2, description="Retries on timeouts, connection resets, HTTP 5xx/429 (jittered backoff)"
    )
    max_image_bytes: PositiveInt = Field(
        20 * 1024 * 1024, description="Larger bodies are cut off (too_large)"
    )
    max_image_pixels: PositiveInt = Field(
        100_000_000, description="Larger images are refused before decoding (too_large)"
    )
    allow_private_networks: bool = Field(
        False, description="Allow image URLs on loopback/private/link-local addresses"
    )

    # Logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="DEBUG adds per-image and per-batch lines"
    )
    log_format: LogFormat = Field(
        LogFormat.AUTO, description="json, console, or auto (JSON unless stderr is a terminal)"
    )

    # Kafka service
    kafka_bootstrap_servers: str = Field("localhost:9092", description="Kafka brokers")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (SASL_* protocols only)"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password; never logged")
    kafka_ssl_cafile: str | None = Field(
        None, description="CA bundle for TLS; none = the system's trust store"
    )
    group_id: str = Field("birdwatch", description="Consumer group")
    instance_id: str | None = Field(None, description="Static membership id (group.instance.id)")
    input_topic: str = Field("bird-images", description="Topic of the image events")
    results_topic: str = Field(
        "bird-predictions", description="Topic of the results, keyed by event id"
    )
    dlq_topic: str = Field(
        "bird-images.dlq", description="Topic of the records that cannot be parsed (dead letters)"
    )
    processing_guarantee: ProcessingGuarantee = Field(
        ProcessingGuarantee.AT_LEAST_ONCE,
        description="at_least_once, or exactly_once (transactions)",
    )
    shutdown_timeout_s: PositiveFloat = Field(30.0, description="Drain time on SIGTERM/SIGINT")
    revoke_timeout_s: PositiveFloat = Field(10.0, description="Drain time for revoked partitions")
    commit_interval_ms: PositiveInt = Field(200, description="Offset commit / transaction cadence")
    session_timeout_ms: Annotated[int, Field(ge=1000)] = Field(
        10_000, description="Group session timeout"
    )
    heartbeat_interval_ms: Annotated[int, Field(ge=100)] = Field(
        1000,
        description="How often a member heartbeats; members learn of a rebalance at their next "
        "heartbeat, so this bounds how long a join or a leave waits for the others. Below the "
        "session timeout.",
    )
    transaction_timeout_ms: Annotated[int, Field(ge=1000)] = Field(
        20_000, description="Exactly-once transaction timeout"
    )
    summary_interval_s: PositiveFloat = Field(30.0, description="Throughput log interval")
    http_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        8080, description="Health, readiness and metrics port"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "instance_id", "kafka_sasl_mechanism", "kafka_ssl_cafile", "fetch_per_host", mode="before"
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("model_sha256", mode="before")
    @classmethod
    def _sha256(cls, value: object) -> object:
        if value is None or value == "":
            return None
        text = str(value).strip().lower().removeprefix("sha256:")
        if not re.fullmatch(r"[0-9a-f]{64}", text):
            raise ValueError("must be 64 hexadecimal digits (a sha256)")
        return text

    @field_validator("heartbeat_interval_ms")
    @classmethod
    def _below_session_timeout(cls, value: int, info: ValidationInfo) -> int:
        session = info.data.get("session_timeout_ms")
        if session is not None and value >= session:
            raise ValueError(f"must be below BIRDWATCH_SESSION_TIMEOUT_MS ({session})")
        return value

    @property
    def fetch_per_host_limit(self) -> int:
        """The download slots one host may hold: the setting, else half of the slots."""
        share = self.fetch_per_host or max(1, self.fetch_concurrency // 2)
        return min(share, self.fetch_concurrency)

    @property
    def decode_memory_bytes(self) -> int:
        return self.decode_memory_mib * 2**20

    @property
    def cache_path(self) -> Path | None:
        """The model cache folder, or None when caching is off (empty setting)."""
        return Path(self.model_cache_dir).expanduser() if self.model_cache_dir else None


# BIRDWATCH_* variables read by this repository's tools (tests, benchmarks), not by the service.
TOOL_VARIABLES = frozenset({"BIRDWATCH_REAL_MODEL_DIR", "BIRDWATCH_TEST_KAFKA_PORT"})


def setting_variables() -> frozenset[str]:
    """Every variable the service reads: one per `Settings` field, and the secrets folder."""
    return frozenset({ENV_PREFIX + name.upper() for name in Settings.model_fields}) | {
        SECRETS_DIR_VARIABLE
    }


def unknown_variables(
    environ: Mapping[str, str], dotenv: Path | None = Path(".env")
) -> list[tuple[str, str | None]]:
    """`BIRDWATCH_*` names in `environ` or the `dotenv` file that no setting reads, each with
    the closest known name (None when none is close): a misspelled setting is silently
    ignored otherwise."""
    names = {name for name in environ if name.upper().startswith(ENV_PREFIX)}
    if dotenv is not None and dotenv.is_file():
        names |= {k for k in dotenv_values(dotenv) if k.upper().startswith(ENV_PREFIX)}
    known = setting_variables()
    unknown = sorted(n for n in names if n.upper() not in known | TOOL_VARIABLES)
    return [(name, _closest(name.upper(), known)) for name in unknown]


def _closest(name: str, known: frozenset[str]) -> str | None:
    # Compared without the common prefix, which would make every pair look alike.
    suffixes = {k.removeprefix(ENV_PREFIX): k for k in known}
    matches = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), sorted(suffixes), n=1)
    return suffixes[matches[0]] if matches else None


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
