"""The kit's fakes at the pipeline's boundaries and its small helpers."""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from consumer.images.errors import ImageError
from consumer.testing import (
    FakeClassifier,
    FakeClock,
    FakeFetcher,
    decode_marker,
    fake_model,
    free_port,
    image_body,
    settle,
    wait_until,
)
from consumer.testing.archives import write_tar_gz
from consumer.testing.serve import metric_value, pin_to
from schemas import ErrorCode


async def test_the_fetcher_serves_by_url_or_by_name() -> None:
    fetcher = FakeFetcher()
    fetcher.serve("http://a/x", b"cls4")
    fetcher.serve_many({"http://a/boom": ValueError("bad")})
    assert await fetcher.fetch("http://a/x") == b"cls4"
    assert await fetcher.fetch("http://a/cls2") == b"cls2"
    with pytest.raises(ImageError) as caught:
        await fetcher.fetch("http://a/fail-too_large")
    assert caught.value.code is ErrorCode.TOO_LARGE
    with pytest.raises(RuntimeError):
        await fetcher.fetch("http://a/crash")
    with pytest.raises(ValueError, match="bad"):
        await fetcher.fetch("http://a/boom")
    assert len(fetcher.calls) == 5
    assert fetcher.active == 0


async def test_the_fetcher_holds_and_delays_on_the_clock() -> None:
    clock = FakeClock()
    fetcher = FakeFetcher(clock)
    fetcher.serve("http://a/slow", b"cls1", delay_s=2)
    fetcher.hold("http://a/held")
    slow = asyncio.create_task(fetcher.fetch("http://a/slow"))
    held = asyncio.create_task(fetcher.fetch("http://a/held"))
    await settle()
    assert fetcher.active == fetcher.peak_active == 2
    await clock.advance(1.9)
    assert not slow.done()
    await clock.advance(0.1)
    assert await slow == b"cls1"
    assert not held.done()
    fetcher.release("http://a/other")
    await settle()
    assert not held.done()
    fetcher.release("http://a/held")
    assert await held == b"held"


async def test_a_delay_without_a_clock_is_real_time() -> None:
    fetcher = FakeFetcher()
    fetcher.serve("http://a/s", b"x", delay_s=0.01)
    assert await fetcher.fetch("http://a/s") == b"x"


def test_the_classifier_ranks_the_marked_class_first() -> None:
    batch = np.stack([decode_marker(image_body(c)) for c in (0, 3, 5)])
    assert decode_marker(b"no marker")[0, 0, 0] == 0
    clf = FakeClassifier()
    probs = clf.predict(batch)
    assert probs.shape == (3, 6)
    assert [int(np.argmax(row)) for row in probs] == [0, 3, 5]
    assert np.argsort(-probs[2])[:3].tolist() == [5, 0, 1]
    assert clf.batch_sizes == [3]
    clf.fail = True
    with pytest.raises(RuntimeError):
        clf.predict(batch)


def test_a_fake_model_has_one_label_per_class() -> None:
    assert len(fake_model().labels) == 6
    wide = fake_model(FakeClassifier(num_classes=10), name="wide")
    assert wide.name == "wide"
    assert len(wide.labels) == 10


async def test_wait_until_returns_the_time_taken_or_names_what_it_waited_for() -> None:
    ticks = iter([False, False, True])
    assert await wait_until(lambda: next(ticks), 5, "a tick", step=0.001) >= 0

    async def never() -> bool:
        return False

    with pytest.raises(TimeoutError, match="the impossible"):
        await wait_until(never, 0.01, "the impossible", step=0.005)
    assert 1024 < free_port() < 65536


def test_metric_value_reads_one_sample_of_prometheus_text() -> None:
    text = '# HELP x_total help\nx_total{status="ok"} 3.0\nx_total{status="error"} 1.0\ny 2.5\n'
    assert metric_value(text, "x_total", status="ok") == 3.0
    assert metric_value(text, "y") == 2.5
    assert metric_value(text, "x_total") == 0.0  # labels must match exactly
    assert metric_value(text, "z") == 0.0


def test_pin_to_makes_a_preexec_function_or_none() -> None:
    assert pin_to(None) is None
    pin = pin_to(sorted(os.sched_getaffinity(0))[0])
    assert pin is not None
    before = os.sched_getaffinity(0)
    try:
        pin()
        assert len(os.sched_getaffinity(0)) == 1
    finally:
        os.sched_setaffinity(0, before)


def test_archives_are_reproducible(tmp_path: Path) -> None:
    source = tmp_path / "model"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"graph")
    (source / "variables" / "v.data").write_bytes(b"weights")
    archive = tmp_path / "a.tar.gz"
    write_tar_gz(source, archive)
    first = archive.read_bytes()
    os.utime(source / "saved_model.pb", (0, 1_000_000))
    write_tar_gz(source, archive)
    assert archive.read_bytes() == first
    write_tar_gz(source, tmp_path / "dot.tar.gz", member_prefix="./")
    with tarfile.open(fileobj=gzip.open(tmp_path / "dot.tar.gz")) as tar:
        assert tar.getnames() == ["./saved_model.pb", "./variables", "./variables/v.data"]


def test_importing_the_kit_imports_neither_pytest_nor_tensorflow() -> None:
    modules = ", ".join(
        f"consumer.testing.{m}" for m in ("broker", "models", "serve", "topics", "archives")
    )
    code = (
        f"import sys, consumer.testing, {modules}\n"
        "print(sorted(m for m in ('pytest', 'tensorflow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
