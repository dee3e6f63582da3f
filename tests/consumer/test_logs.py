"""Logging: JSON lines off a terminal, console lines on one, stdlib routed through structlog."""

from __future__ import annotations

import io
import logging

import orjson
import structlog

from consumer.config import LogFormat
from consumer.logs import configure_logging


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_off_a_terminal_with_fields() -> None:
    out = io.StringIO()
    configure_logging("INFO", LogFormat.AUTO, out)
    structlog.get_logger("t").info("batch_done", size=32, ms=41.2)
    structlog.get_logger("t").debug("hidden_detail")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    entry = orjson.loads(lines[0])
    assert entry["event"] == "batch_done"
    assert entry["size"] == 32
    assert entry["level"] == "info"
    assert "timestamp" in entry


def test_stdlib_loggers_are_routed_and_noisy_ones_quieted() -> None:
    out = io.StringIO()
    configure_logging("INFO", LogFormat.JSON, out)
    logging.getLogger("aiohttp.client").warning("stdlib says %s", "hi")
    logging.getLogger("tensorflow").info("start-up noise")
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [entry["event"] for entry in lines] == ["stdlib says hi"]
    assert lines[0]["logger"] == "aiohttp.client"


def test_debug_lets_library_detail_through() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", LogFormat.JSON, out)
    logging.getLogger("tensorflow").info("detail")
    assert "detail" in out.getvalue()


def test_console_format_on_a_terminal() -> None:
    out = FakeTerminal()
    configure_logging("INFO", LogFormat.AUTO, out)
    structlog.get_logger("t").info("model_loaded", backend="litert")
    text = out.getvalue()
    assert "model_loaded" in text
    assert "backend" in text
    assert not text.lstrip().startswith("{")
