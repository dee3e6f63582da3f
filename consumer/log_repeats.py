"""Library log lines that repeat, collapsed into one line per interval with a count.

During a broker outage aiokafka logs the same few errors on every retry ("Unable connect to
node", "Unable to update metadata", "Got error produce response"): ~2,500 lines in a 40-s
outage. The first line of a kind is written at once; identical ones (same logger, level and
message template) within the next `window_s` are only counted; the next one after the window
is written with `repeated=N`: N more lines like it were left out since the previous one of its
kind. Lines left out when their window ends are not forgotten: the last of them is written,
with the count of the others, by the next log line of any kind, or at close. So every line
written stands for itself and `repeated` others.

Only records of other libraries at WARNING and above are collapsed: our own structlog events
(whose message is an event dict) carry their fields and are written as they come.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

REPEAT_WINDOW_S = 30.0
REPEATED_FIELD = "repeated"

_Key = tuple[str, int, str]


@dataclass
class _Kind:
    since: float  # when its last line was written
    left_out: int = 0
    last: logging.LogRecord | None = None  # the last record left out


class RepeatCollapsingHandler(logging.StreamHandler[TextIO]):
    """A stream handler that writes repeated library log lines once per `window_s`."""

    def __init__(
        self,
        stream: TextIO | None = None,
        window_s: float = REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(stream)
        self.window_s = window_s
        self._clock = clock
        self._kinds: dict[_Key, _Kind] = {}
        self._state = threading.Lock()  # records come from threads too (decoding, inference)

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        to_write: list[logging.LogRecord] = []
        with self._state:
            now = self._clock()
            to_write.extend(self._pending_before(now, skip=_key_of(record)))
            if self._keep(record, now):
                to_write.append(record)
        for item in to_write:
            self._write(item)
        return record in to_write

    def close(self) -> None:
        with self._state:
            pending = self._pending_before(float("inf"), skip=None)
        for item in pending:
            self._write(item)
        super().close()

    def _keep(self, record: logging.LogRecord, now: float) -> bool:
        """Whether `record` is written now (else it is counted)."""
        key = _key_of(record)
        if key is None:
            return True
        kind = self._kinds.get(key)
        if kind is not None and now - kind.since < self.window_s:
            kind.left_out += 1
            kind.last = record
            return False
        if kind is not None and kind.left_out:
            setattr(record, REPEATED_FIELD, kind.left_out)
        self._kinds[key] = _Kind(since=now)
        return True

    def _pending_before(self, now: float, skip: _Key | None) -> list[logging.LogRecord]:
        """Lines left out whose window has ended, as the last of each with the count of the
        others; that starts a new window for its kind. Kinds silent for a window are forgotten."""
        due: list[logging.LogRecord] = []
        for key, kind in list(self._kinds.items()):
            if key == skip or now - kind.since < self.window_s:
                continue
            if kind.last is None:
                del self._kinds[key]
                continue
            if kind.left_out > 1:
                setattr(kind.last, REPEATED_FIELD, kind.left_out - 1)
            due.append(kind.last)
            self._kinds[key] = _Kind(since=now)
        return due

    def _write(self, record: logging.LogRecord) -> None:
        # What Handler.handle does once filters have passed: emit under the handler's lock.
        self.acquire()
        try:
            self.emit(record)
        finally:
            self.release()


def _key_of(record: logging.LogRecord) -> _Key | None:
    """What makes two records "the same line"; None for records never collapsed."""
    if record.levelno < logging.WARNING or not isinstance(record.msg, str):
        return None  # detail lines, and our structlog events (their msg is the event dict)
    return (record.name, record.levelno, record.msg)
