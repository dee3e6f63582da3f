"""Connection options shared by every Kafka client we create, from `Settings`."""

from __future__ import annotations

from typing import Any

from aiokafka.helpers import create_ssl_context

from consumer.config import Settings


def client_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for bootstrap servers and security; secrets stay in here."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        password = settings.kafka_sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def describe_connection(settings: Settings) -> dict[str, Any]:
    """What may be logged about the connection: never the password."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_username": settings.kafka_sasl_username,
        "ssl_cafile": settings.kafka_ssl_cafile,
    }
