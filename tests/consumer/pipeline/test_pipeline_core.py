"""The pipeline's core with injected fakes: every event ends in exactly one result, batches
close by size, deadline or when nothing else is coming. Time is a `FakeClock` the tests
advance, so no test depends on a real sleep being long enough."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from consumer.model import ModelError
from consumer.testing import CLASSES, LABELS, FakeClassifier, settle, wait_until
from schemas import ErrorCode
from tests.consumer.pipeline.harness import Harness, event


async def test_every_event_gets_its_top3(make_pipeline: Callable[..., Harness]) -> None:
    h = make_pipeline(max_batch_size=4)
    for i in range(10):
        h.pipeline.submit(event(i), tag=i)
    await h.pipeline.drain()
    got = h.by_id()
    assert sorted(got) == sorted(f"e{i}" for i in range(10))
    for i in range(10):
        result = got[f"e{i}"]
        assert result.status == "ok"
        assert [p.label_id for p in result.predictions] == [
            i % CLASSES,
            (i + 1) % CLASSES,
            (i + 2) % CLASSES,
        ]
        assert result.predictions[0].label == LABELS[i % CLASSES]
        assert result.model == "fake-model"
        assert {"fetch_wait", "fetch", "decode_wait", "decode", "queue", "inference"} <= set(
            result.timings_ms
        )
    assert h.pipeline.in_flight == 0
    assert max(h.classifier.batch_sizes) <= 4
    assert sum(h.classifier.batch_sizes) == 10
    # Batching happened: fewer model calls than images.
    assert len(h.classifier.batch_sizes) < 10
    assert h.classifier.threads == {"inference_0"}


async def test_the_no_bird_class_is_never_a_species(make_pipeline: Callable[..., Harness]) -> None:
    h = make_pipeline(background_id=2)
    h.pipeline.submit(event(2))  # the fake ranks class 2 first, then 3 and 4
    h.pipeline.submit(event(0))  # 0, 1, then 2
    await h.pipeline.drain()
    got = h.by_id()

    # The third is one of the classes tied at 0.01; never the no-bird class.
    e2 = [p.label_id for p in got["e2"].predictions]
    assert e2[:2] == [3, 4]
    assert e2[2] in (0, 1, 5)
    assert got["e2"].background is not None
    assert (got["e2"].background.label_id, got["e2"].background.label) == (2, "background")
    assert got["e2"].background.score == pytest.approx(0.9)
    e0 = [p.label_id for p in got["e0"].predictions]
    assert e0[:2] == [0, 1]
    assert e0[2] in (3, 4, 5)
    assert got["e0"].background is not None
    assert got["e0"].background.score == pytest.approx(0.03)


async def test_failed_images_do_not_sink_the_batch(make_pipeline: Callable[..., Harness]) -> None:
    h = make_pipeline()
    h.pipeline.submit(event(1))
    h.pipeline.submit(event(2, "fail-http_status"))
    h.pipeline.submit(event(3, "fail-not_an_image"))
    h.pipeline.submit(event(4, "crash"))
    h.pipeline.submit(event(5))
    await h.pipeline.drain()
    got = h.by_id()
    assert got["e1"].status == got["e5"].status == "ok"
    assert got["e2"].error is not None
    assert got["e2"].error.code is ErrorCode.HTTP_STATUS
    assert got["e3"].error is not None
    assert got["e3"].error.code is ErrorCode.NOT_AN_IMAGE
    assert got["e4"].error is not None
    assert got["e4"].error.code is ErrorCode.INTERNAL
    assert got["e2"].predictions == []
    assert got["e2"].model == "fake-model"


async def test_inference_failure_yields_internal_errors_and_pipeline_continues(
    make_pipeline: Callable[..., Harness],
) -> None:
    clf = FakeClassifier(fail=True)
    h = make_pipeline(classifier=clf)
    h.pipeline.submit(event(1))
    await h.pipeline.drain()
    assert h.by_id()["e1"].error is not None
    assert h.by_id()["e1"].error.code is ErrorCode.INTERNAL  # type: ignore[union-attr]
    clf.fail = False
    h.pipeline.submit(event(2))
    await h.pipeline.drain()
    assert h.by_id()["e2"].status == "ok"


async def test_images_are_prepared_while_the_model_loads(
    make_pipeline: Callable[..., Harness],
) -> None:
    h = make_pipeline(max_batch_size=8, model_waits=True)
    for i in range(5):
        h.pipeline.submit(event(i))
    # All five are fetched and decoded before the model is there...
    await wait_until(lambda: h.stages.counts.get("decode") == 5, 5, "five decoded", step=0.005)
    assert len(h.fetcher.calls) == 5
    assert h.results == []
    h.model_gate.set()
    await h.pipeline.drain()
    # ...and run as one batch once it arrives.
    assert h.classifier.batch_sizes == [5]


async def test_model_failure_surfaces_from_drain(make_pipeline: Callable[..., Harness]) -> None:
    h = make_pipeline(model_error=ModelError("no model"))
    h.pipeline.submit(event(1))
    with pytest.raises(ModelError, match="no model"):
        await h.pipeline.drain()
    with pytest.raises(ModelError):
        h.pipeline.submit(event(2))


async def test_batch_closes_at_its_deadline_while_more_are_coming(
    make_pipeline: Callable[..., Harness],
) -> None:
    h = make_pipeline(max_batch_size=32, max_batch_delay_s=0.05)
    h.fetcher.serve("http://img.test/slow", b"cls2", delay_s=0.5)
    h.pipeline.submit(event(1))
    h.pipeline.submit(event(2, "slow"))
    # The slow download and the batch's deadline both wait on the clock.
    await wait_until(lambda: h.clock.pending == 2, 5, "two waits", step=0.005)
    await h.clock.advance(0.049)
    await settle()
    assert h.results == []  # before the deadline, the batch stays open
    await h.clock.advance(0.001)
    # The fast image did not wait for the slow one: its batch closed at the deadline.
    await wait_until(lambda: len(h.results) == 1, 5, "the first result", step=0.005)
    assert [r.id for _, r in h.results] == ["e1"]
    await h.clock.advance(0.45)
    await h.pipeline.drain()
    assert h.classifier.batch_sizes == [1, 1]
    assert h.results[1][1].timings_ms["fetch"] == 500.0  # measured on the same clock


async def test_lone_image_does_not_wait_for_the_deadline(
    make_pipeline: Callable[..., Harness],
) -> None:
    # The clock never moves: a batch closing only at its deadline would never close.
    h = make_pipeline(max_batch_size=32, max_batch_delay_s=5.0)
    h.pipeline.submit(event(1))
    await asyncio.wait_for(h.pipeline.drain(), timeout=5.0)
    assert h.by_id()["e1"].status == "ok"
    assert h.clock.now() == 0.0


async def test_last_failure_wakes_a_waiting_batch(make_pipeline: Callable[..., Harness]) -> None:
    h = make_pipeline(max_batch_size=32, max_batch_delay_s=5.0)
    h.fetcher.serve("http://img.test/slow", b"cls2", delay_s=0.1)
    h.pipeline.submit(event(1))
    h.pipeline.submit(event(2, "slow"))
    h.pipeline.submit(event(3, "fail-timeout"))
    await wait_until(lambda: h.clock.pending >= 1, 5, "the slow download", step=0.005)
    await h.clock.advance(0.1)  # far from the 5 s deadline
    await asyncio.wait_for(h.pipeline.drain(), timeout=5.0)
    assert {r.id: r.status for _, r in h.results} == {"e1": "ok", "e2": "ok", "e3": "error"}


async def test_drain_with_nothing_submitted_returns(make_pipeline: Callable[..., Harness]) -> None:
    h = make_pipeline()
    await asyncio.wait_for(h.pipeline.drain(), timeout=1.0)
    assert h.pipeline.model is None


async def test_in_flight_counts_until_the_sink_returns(
    make_pipeline: Callable[..., Harness],
) -> None:
    h = make_pipeline()
    h.pipeline.submit(event(1))
    h.pipeline.submit(event(2))
    assert h.pipeline.in_flight == 2
    await h.pipeline.drain()
    assert h.pipeline.in_flight == 0
    assert h.pipeline.model is not None
