"""Fault injection: the model URL unreachable when `birdwatch serve` starts (a child process).

Readiness must stay false (503) while it retries, the retries must be logged with their
backoff, and once BIRDWATCH_MODEL_LOAD_TIMEOUT_S is spent the process must exit non-zero with
one line on stderr saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from consumer.testing.serve import BIRDWATCH
from consumer.testing.waiting import free_port
from tests.reliability_support import FaultyHost, child_env, record_figures

pytestmark = pytest.mark.slow

LOAD_TIMEOUT_S = 4.0


async def probe(session: aiohttp.ClientSession, url: str) -> int | None:
    try:
        async with session.get(url) as resp:
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return None


@pytest.mark.parametrize("failure", ["refused", "black_hole"])
async def test_model_unreachable_at_start_up_keeps_readiness_false_then_exits_non_zero(
    failure: str, tmp_path: Path
) -> None:
    async with FaultyHost(linger_s=30) as host:
        if failure == "refused":
            base = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        else:
            base = host.url("hang", "models")  # accepts, never answers
        port = free_port()
        env = child_env(
            BIRDWATCH_MODEL_URL=f"{base}/birds.tflite",
            BIRDWATCH_LABELS_URL=f"{base}/labels.csv",
            BIRDWATCH_MODEL_LOAD_TIMEOUT_S=str(LOAD_TIMEOUT_S),
            BIRDWATCH_MODEL_CACHE_DIR="",
            BIRDWATCH_HTTP_PORT=str(port),
            BIRDWATCH_LOG_FORMAT="json",
            # Never reached: the model comes first.
            BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
        )
        stderr_path = tmp_path / "stderr.log"
        started = time.monotonic()
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [str(BIRDWATCH), "serve"], env=env, stdout=subprocess.PIPE, stderr=stderr
            )
            readyz: list[int] = []
            healthz: list[int] = []
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
                    deadline = started + LOAD_TIMEOUT_S + 30
                    while proc.poll() is None and time.monotonic() < deadline:
                        ready = await probe(session, f"http://127.0.0.1:{port}/readyz")
                        health = await probe(session, f"http://127.0.0.1:{port}/healthz")
                        if ready is not None:
                            readyz.append(ready)
                        if health is not None:
                            healthz.append(health)
                        await asyncio.sleep(0.2)
                code = proc.wait(timeout=10)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
        elapsed = time.monotonic() - started
        stdout = proc.stdout.read() if proc.stdout else b""
        if proc.stdout:
            proc.stdout.close()

    lines = stderr_path.read_text(errors="replace").splitlines()
    events: list[dict[str, Any]] = []
    plain: list[str] = []
    for line in lines:
        if line.startswith("{"):
            with contextlib.suppress(orjson.JSONDecodeError):
                events.append(orjson.loads(line))
                continue
        plain.append(line)
    names = [e["event"] for e in events]

    assert code == 2, lines[-20:]
    assert stdout == b""
    # Exactly one human line on stderr, the reason.
    assert len(plain) == 1, plain
    reason = plain[0]
    assert reason.startswith("birdwatch: model error:")
    # Readiness never turned true; liveness held while it retried.
    assert readyz, "the endpoints never answered"
    assert set(readyz) == {503}
    assert set(healthz) == {200}
    assert "kafka_connecting" not in names
    assert "serving" not in names
    assert "model_unavailable" in names
    retries = [e for e in events if e["event"] == "model_load_retry"]
    if failure == "refused":
        # Retried with a growing backoff, each retry logged with its attempt and reason.
        assert len(retries) >= 2
        assert [e["attempt"] for e in retries] == list(range(1, len(retries) + 1))
        delays = [e["retry_in_s"] for e in retries]
        assert delays == sorted(delays)
        assert delays[-1] > delays[0]
        assert all("failed" in e["reason"] for e in retries)
    else:
        # The only attempt hung: the load timeout ended it.
        assert f"model not loaded within {LOAD_TIMEOUT_S:g} s" in reason
        assert "BIRDWATCH_MODEL_LOAD_TIMEOUT_S" in reason

    record_figures(
        f"model_unreachable_{failure}",
        {
            "fault": {
                "refused": "model URL refuses connections",
                "black_hole": "model URL accepts and never answers",
            }[failure],
            "faults_injected": 1,
            "model_load_timeout_s": LOAD_TIMEOUT_S,
            "exit_code": code,
            "exit_after_s": round(elapsed, 1),
            "readyz_samples": len(readyz),
            "readyz_statuses": sorted(set(readyz)),
            "retries_logged": len(retries),
            "retry_delays_s": [e["retry_in_s"] for e in retries],
            "stderr_reason": reason,
        },
    )
