"""Smoke run of the *scale-out* scenario: 1 and 2 pinned consumers, a small burst."""

from __future__ import annotations

import pytest

from bench.common import BenchContext, load_json
from bench.records import ScaleoutResult
from bench.runner import run_scenario
from bench.scenarios import scaleout

pytestmark = pytest.mark.kafka


async def test_scaleout_drains_a_burst_with_pinned_consumers(kafka_ctx: BenchContext) -> None:
    config = scaleout.Config(consumers=(1, 2), events=12, partitions=2, rounds=1, timeout_s=60)
    result = await run_scenario("scaleout", kafka_ctx, config)

    for n in ("1", "2"):
        data = result["counts"][n]
        (run,) = data["runs"]
        assert run["ok"] == run["events"] == 12
        assert data["drain_s"] > 0
        assert len(data["per_consumer"]) == int(n)
        assert all(len(c["cpu"]) == 1 for c in data["per_consumer"])  # pinned
        assert sum(c["results"] for c in data["per_consumer"]) == 12
        # Shares of the machine; a little over 1 is /proc rounding on a tiny window.
        assert 0 < data["consumers_busy"] <= data["machine_busy"] <= 1.1
    assert result["speedup"]["1"]["median"] == pytest.approx(1.0)
    assert result["speedup"]["2"]["median"] > 0
    assert (kafka_ctx.out_dir / "scaleout.png").stat().st_size > 0
    assert scaleout.summary(result)
    saved = load_json(kafka_ctx.out_dir, "scaleout")
    assert saved is not None
    record = ScaleoutResult.of(saved)  # what the report, plots and targets read
    assert sorted(record.counts) == ["1", "2"]
    assert record.counts["2"].runs[0].ok == 12
