"""Kafka client options: security settings reach the client, secrets never reach the logs."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import structlog

from consumer.config import LogFormat, Settings
from consumer.kafka.clients import client_options, describe_connection
from consumer.logs import configure_logging


def test_plaintext_has_no_security_options(make_settings: Callable[..., Settings]) -> None:
    options = client_options(make_settings(kafka_bootstrap_servers="k1:9092,k2:9092"))
    assert options == {"bootstrap_servers": "k1:9092,k2:9092", "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_passes_credentials_and_ca(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    import ssl

    ca = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    settings = make_settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="bird",
        kafka_sasl_password="s3cret-pw",
        kafka_ssl_cafile=str(ca),
    )
    options = client_options(settings)
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "bird"
    assert options["sasl_plain_password"] == "s3cret-pw"
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_connection_description_and_logs_never_hold_the_password(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="bird",
        kafka_sasl_password="s3cret-pw",
    )
    out = io.StringIO()
    configure_logging("DEBUG", LogFormat.JSON, out)
    structlog.get_logger("t").info("kafka_connecting", **describe_connection(settings))
    structlog.get_logger("t").info("settings", settings=repr(settings), dump=settings.model_dump())
    assert "bird" in out.getvalue()
    assert "s3cret-pw" not in out.getvalue()
    assert "s3cret-pw" not in repr(settings)
