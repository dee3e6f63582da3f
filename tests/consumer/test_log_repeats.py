"""Repeated library log lines collapse into one line per interval with a count
(consumer/log_repeats.py); the real outage is in test_reliability_broker.py."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest
import structlog

from consumer.config import LogFormat
from consumer.log_repeats import RepeatCollapsingHandler
from consumer.logs import configure_logging


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lines(clock: Clock) -> Iterator[tuple[logging.Logger, io.StringIO, RepeatCollapsingHandler]]:
    out = io.StringIO()
    handler = RepeatCollapsingHandler(out, window_s=30.0, clock=clock)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s repeated=%(repeated)s"))
    handler.addFilter(_DefaultRepeated())
    logger = logging.getLogger("aiokafka.test")
    logger.propagate = False
    logger.addHandler(handler)
    yield logger, out, handler
    logger.removeHandler(handler)
    logger.propagate = True


class _DefaultRepeated(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "repeated"):
            record.repeated = 0
        return True


def written(out: io.StringIO) -> list[tuple[str, int]]:
    rows = []
    for line in out.getvalue().splitlines():
        text, _, count = line.rpartition(" repeated=")
        rows.append((text, int(count)))
    return rows


def test_an_outage_worth_of_errors_is_one_line_per_interval_with_a_count(
    lines: tuple[logging.Logger, io.StringIO, RepeatCollapsingHandler], clock: Clock
) -> None:
    logger, out, handler = lines
    # 95 s of a broker outage: a connection error every 0.1 s for node 1 and 2, a metadata
    # error every second.
    raw = 0
    for tick in range(950):
        clock.now += 0.1
        logger.error("Unable connect to node with id %s: %s", tick % 2 + 1, "Connect call failed")
        raw += 1
        if tick % 10 == 0:
            logger.error("Unable to update metadata from %s", [1])
            raw += 1
    handler.close()

    rows = written(out)
    # One line per kind per 30 s window (4 windows in 95 s), plus the counts pending at close.
    assert len(rows) <= 2 * (95 // 30 + 2)
    assert sum(1 + repeated for _, repeated in rows) == raw  # nothing is lost from the count
    connect = [r for r in rows if "Unable connect" in r[0]]
    assert connect[0] == ("ERROR Unable connect to node with id 1: Connect call failed", 0)
    assert connect[1][1] > 250  # ~30 s of them, 10 a second


def test_a_pending_count_is_written_by_the_next_line_of_any_kind(
    lines: tuple[logging.Logger, io.StringIO, RepeatCollapsingHandler], clock: Clock
) -> None:
    logger, out, _ = lines
    for _ in range(5):
        logger.warning("Got error produce response: %s", "KafkaConnectionError")
    assert len(written(out)) == 1
    clock.now += 31  # the broker is back: no more of them
    logger.warning("Heartbeat failed for group %s", "g")
    assert written(out) == [
        ("WARNING Got error produce response: KafkaConnectionError", 0),
        ("WARNING Got error produce response: KafkaConnectionError", 3),  # the 5th, and 3 more
        ("WARNING Heartbeat failed for group g", 0),
    ]


def test_other_lines_are_never_collapsed(
    lines: tuple[logging.Logger, io.StringIO, RepeatCollapsingHandler],
) -> None:
    logger, out, _ = lines
    logger.setLevel(logging.INFO)
    for _ in range(3):
        logger.info("detail %s", 1)  # below WARNING
        logger.error({"event": "produce_retry", "offset": 7})  # type: ignore[arg-type]  # ours
    assert len(written(out)) == 6


def test_the_service_logging_collapses_library_lines_and_shows_the_count() -> None:
    out = io.StringIO()
    configure_logging("INFO", LogFormat.JSON, out)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, RepeatCollapsingHandler)
    handler.window_s = 0.0  # every line ends its window at once: the count shows right away
    kafka = logging.getLogger("aiokafka.conn")
    for _ in range(2):
        kafka.error("Unable connect to node with id %s", 1)
    handler.window_s = 3600.0
    for _ in range(4):
        kafka.error("Unable connect to node with id %s", 1)
        structlog.get_logger("t").warning("produce_retry", offset=7)
    entries = [orjson.loads(line) for line in out.getvalue().splitlines()]
    library = [e for e in entries if e["logger"] == "aiokafka.conn"]
    assert [e.get("repeated") for e in library] == [None, None]
    assert [e["event"] for e in entries].count("produce_retry") == 4
    handler.close()
    entries = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [e.get("repeated") for e in entries if e["logger"] == "aiokafka.conn"] == [None, None, 3]
