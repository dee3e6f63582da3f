"""Native start-up noise on fd 2 is dropped unless debugging; everything else passes."""

from __future__ import annotations

import logging
import os

import pytest

from consumer.native_logs import NATIVE_NOISE, quiet_native_stderr

NOISE = [
    b"I0000 00:00:1795708738.077328   24724 cudart_stub.cc:31] Could not find cuda drivers\n",
    b"W0000 00:00:1795708738.077328   24724 cpu_feature_guard.cc:227] This TensorFlow binary\n",
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
]
KEPT = [
    b'{"event": "model_loaded", "level": "info"}\n',
    b"E0000 00:00:1795708738.077328   24724 cuda.cc:52] a real error\n",
    b"Traceback (most recent call last):\n",
]


@pytest.mark.parametrize("line", NOISE)
def test_noise_pattern_matches_native_chatter(line: bytes) -> None:
    assert NATIVE_NOISE.match(line)


@pytest.mark.parametrize("line", KEPT)
def test_noise_pattern_keeps_everything_else(line: bytes) -> None:
    assert not NATIVE_NOISE.match(line)


def test_filter_drops_noise_and_keeps_other_lines(capfd: pytest.CaptureFixture[str]) -> None:
    logging.getLogger().setLevel(logging.INFO)
    with quiet_native_stderr():
        for line in [*NOISE, *KEPT]:
            os.write(2, line)
    err = capfd.readouterr().err
    for line in KEPT:
        assert line.decode() in err
    for line in NOISE:
        assert line.decode() not in err
    os.write(2, NOISE[0])  # fd 2 is restored afterwards
    assert NOISE[0].decode() in capfd.readouterr().err


def test_debug_keeps_native_lines(capfd: pytest.CaptureFixture[str]) -> None:
    logging.getLogger().setLevel(logging.DEBUG)
    try:
        with quiet_native_stderr():
            os.write(2, NOISE[0])
    finally:
        logging.getLogger().setLevel(logging.WARNING)
    assert NOISE[0].decode() in capfd.readouterr().err
