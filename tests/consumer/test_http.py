"""Health, readiness and metrics endpoints."""

from __future__ import annotations

import aiohttp

from consumer.http import make_app, start_http
from consumer.metrics import Metrics


async def test_endpoints_report_liveness_readiness_and_metrics() -> None:
    metrics = Metrics()
    state = {"alive": True, "ready": False}
    app = make_app(metrics, lambda: state["alive"], lambda: state["ready"])
    runner = await start_http(app, 0, host="127.0.0.1")
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    try:
        metrics.records_consumed.inc(3)
        metrics.count_outcome("ok")
        metrics.count_outcome("dlq")
        metrics.batch(4, 0.02)
        metrics.stage("fetch", 0.1)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz") as r:
                assert r.status == 200
            async with session.get(f"{base}/readyz") as r:
                assert r.status == 503
                assert (await r.json())["status"] == "not_ready"
            state["ready"] = True
            async with session.get(f"{base}/readyz") as r:
                assert r.status == 200
            state["alive"] = False
            async with session.get(f"{base}/healthz") as r:
                assert r.status == 503
            async with session.get(f"{base}/metrics") as r:
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain")
                text = await r.text()
    finally:
        await runner.cleanup()
    assert "birdwatch_records_consumed_total 3.0" in text
    assert 'birdwatch_results_produced_total{status="ok"} 1.0' in text
    assert "birdwatch_dlq_records_total 1.0" in text
    assert "birdwatch_batch_size_count 1.0" in text
    assert 'birdwatch_stage_seconds_count{stage="fetch"} 1.0' in text
    assert 'birdwatch_stage_seconds_count{stage="inference"} 1.0' in text
    assert metrics.outcomes_total == 2
