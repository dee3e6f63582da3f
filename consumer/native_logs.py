"""Silencing what native libraries (TensorFlow, absl, LiteRT) print straight to file descriptor 2.

Their C++ loggers bypass Python logging, so the only way to drop their start-up chatter is to
filter fd 2 while they load: a pipe takes fd 2's place, and a thread copies every line that is
not glog/absl noise back to the real stderr, so our own log lines still pass in order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator

# glog/absl INFO and WARNING lines, absl's pre-init notice, CPU-feature and XNNPACK banners.
NATIVE_NOISE = re.compile(
    rb"^(?:[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\]"
    rb"|WARNING: All log messages before absl::InitializeLog\(\)"
    rb"|To enable the following instructions:"
    rb"|INFO: Created TensorFlow Lite)"
)


def native_noise_wanted() -> bool:
    """Native chatter is kept when the service logs at DEBUG."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Drop native start-up noise from fd 2 while the block runs (unless debugging)."""
    if native_noise_wanted():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_copy_lines, args=(read_end, saved), daemon=True)
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees EOF
        pump.join(timeout=5)
        os.close(saved)


def _copy_lines(read_end: int, target: int) -> None:
    with os.fdopen(read_end, "rb") as source:
        for line in source:
            if not NATIVE_NOISE.match(line):
                os.write(target, line)
