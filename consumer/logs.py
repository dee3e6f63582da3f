"""structlog set-up: JSON lines off a terminal, readable lines on one; stdlib logs go through it."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

import stamina
import structlog

from consumer.config import LogFormat
from consumer.log_repeats import REPEATED_FIELD, RepeatCollapsingHandler

# Libraries that are chatty at INFO; they only speak up at WARNING unless we debug.
_NOISY = ("aiokafka", "kafka", "tensorflow", "absl", "h5py", "urllib3", "asyncio", "PIL")


class _RedactSaslExchange(logging.Filter):
    """aiokafka logs each request at DEBUG, SaslAuthenticate too, whose bytes carry the SASL/PLAIN
    password in clear: such arguments are replaced before the record is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(map(_is_sasl_exchange, record.args)):
            record.args = tuple(
                "<SASL exchange redacted>" if _is_sasl_exchange(a) else a for a in record.args
            )
        return True


def _is_sasl_exchange(value: object) -> bool:
    # aiokafka's protocol structs: SaslAuthenticateRequest_v1, SaslAuthenticateResponse_v1, ...
    return type(value).__name__.startswith("SaslAuthenticate")


def quiet_tensorflow(debug: bool) -> None:
    """Silence TensorFlow's C++ start-up noise; must run before tensorflow is imported.

    Only log levels: TF_ENABLE_ONEDNN_OPTS is left alone, since turning oneDNN off to hide its
    notice made TensorFlow inference 2.4x slower (docs/PERFORMANCE.md, knobs scenario).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if debug else "3")


def configure_logging(level: str, fmt: LogFormat, stream: TextIO | None = None) -> None:
    """Configure structlog and route stdlib logging (aiohttp, TensorFlow, absl) through it."""
    out = stream or sys.stderr
    use_json = fmt is LogFormat.JSON or (fmt is LogFormat.AUTO and not out.isatty())
    quiet_tensorflow(debug=level == "DEBUG")

    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor
    if use_json:
        shared.append(structlog.processors.dict_tracebacks)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # Other libraries' lines carry the count of repeats left out (consumer/log_repeats.py).
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(allow=[REPEATED_FIELD])],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = RepeatCollapsingHandler(out)
    handler.setFormatter(formatter)
    handler.addFilter(_RedactSaslExchange())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in _NOISY:
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")
    logging.captureWarnings(True)
    # Each retry loop logs its own event with what it retries (topic, partition, url); stamina's
    # generic lines would repeat them, and its Prometheus hook would write to the global registry.
    stamina.instrumentation.set_on_retry_hooks([])
