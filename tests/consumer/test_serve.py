"""`birdwatch serve` before Kafka: readiness while the model loads, and giving up cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import pytest
from structlog.testing import capture_logs

from consumer import cli
from consumer.config import Settings
from consumer.kafka.serve import run_serve
from consumer.model import ModelError
from consumer.testing.serve import metric_value
from consumer.testing.waiting import free_port


@pytest.mark.usefixtures("real_retry_waits")  # readiness is probed while the model retries
async def test_unreachable_model_keeps_readiness_false_then_fails(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    dead = f"http://127.0.0.1:{free_port()}/model.tflite"
    # Sampled for the first 2 s of a 5 s load timeout: a busy machine stretching the sampling
    # loop must not reach the moment the load gives up (then liveness fails, as it should).
    settings = make_settings(
        model_url=dead, labels_url=dead + ".csv", model_load_timeout_s=5, http_port=port
    )
    with capture_logs() as logs:
        serving = asyncio.create_task(run_serve(settings))
        statuses: list[tuple[int, int]] = []
        # (birdwatch_ready, birdwatch_model_load_failures_total) as /metrics said them
        samples: list[tuple[float, float]] = []
        loop = asyncio.get_running_loop()
        sample_until = loop.time() + 2
        async with aiohttp.ClientSession() as session:
            while loop.time() < sample_until:
                await asyncio.sleep(0.1)
                try:
                    async with (
                        session.get(f"http://127.0.0.1:{port}/readyz") as ready,
                        session.get(f"http://127.0.0.1:{port}/healthz") as health,
                    ):
                        statuses.append((ready.status, health.status))
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as metrics:
                        text = await metrics.text()
                    samples.append(
                        (
                            metric_value(text, "birdwatch_ready"),
                            metric_value(text, "birdwatch_model_load_failures_total"),
                        )
                    )
                except aiohttp.ClientConnectionError:
                    continue
        with pytest.raises(ModelError, match=r"cannot connect|failed|within"):
            await asyncio.wait_for(serving, timeout=10)
    assert statuses, "the endpoints never answered"
    assert all(ready == 503 for ready, _ in statuses)
    assert all(health == 200 for _, health in statuses)
    retries = [e for e in logs if e["event"] == "model_load_retry"]
    assert retries
    # The metrics say the same: not ready, and every failed attempt counted as it happened.
    assert all(ready == 0 for ready, _ in samples)
    failures = [count for _, count in samples]
    assert failures == sorted(failures)
    assert 1 <= failures[-1] <= len(retries) + 1


@pytest.mark.usefixtures("real_retry_waits")  # the model must still be loading at the stop
async def test_stop_while_the_model_loads_exits_zero(
    make_settings: Callable[..., Settings],
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/model.tflite"
    settings = make_settings(
        model_url=dead, labels_url=dead + ".csv", model_load_timeout_s=60, http_port=free_port()
    )
    stop = asyncio.Event()
    serving = asyncio.create_task(run_serve(settings, stop))
    await asyncio.sleep(0.5)
    stop.set()
    assert await asyncio.wait_for(serving, timeout=5) == 0


async def test_cli_reports_a_model_error_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/model.tflite"
    monkeypatch.setenv("BIRDWATCH_MODEL_URL", dead)
    monkeypatch.setenv("BIRDWATCH_LABELS_URL", dead + ".csv")
    monkeypatch.setenv("BIRDWATCH_MODEL_LOAD_TIMEOUT_S", "1")
    monkeypatch.setenv("BIRDWATCH_HTTP_PORT", str(free_port()))
    monkeypatch.setenv("BIRDWATCH_LOG_FORMAT", "json")
    code = await asyncio.to_thread(cli.main, ["serve"])
    err = capsys.readouterr().err
    assert code == 2
    reasons = [line for line in err.splitlines() if line.startswith("birdwatch: model error:")]
    assert len(reasons) == 1
