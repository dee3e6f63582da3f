"""The scale-out and memory records, written as the scenarios write them, saved as the runner
saves them (NaN as null), and read back by the summaries, the report, the plots and the
targets."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bench import plots, report, targets
from bench.common import clean_json
from bench.records import (
    ConsumerShare,
    MemoryResult,
    MemoryVariant,
    Range,
    ScaleoutResult,
    ScaleRun,
    to_json,
)
from bench.scenarios import memory, scaleout


def saved(result: dict[str, Any]) -> dict[str, Any]:
    """`result` after a trip through its JSON file."""
    loaded: dict[str, Any] = json.loads(json.dumps(clean_json(result)))
    return loaded


def scale_run(n: int, throughput: float) -> ScaleRun:
    shares = [ConsumerShare([i], 2.0, 600 / n) for i in range(n)]
    busy = {"ours_busy": 0.4 * n, "machine_busy": 0.9}
    return ScaleRun(n, 600, 600, 600 / throughput, throughput, math.nan, 1.5, shares, busy)


def scaleout_result() -> dict[str, Any]:
    rounds = [{"1": scale_run(1, 100.0), "2": scale_run(2, 180.0)} for _ in range(2)]
    counts = {n: scaleout.count_figures([r[n] for r in rounds]) for n in ("1", "2")}
    speedup = {"1": Range(1.0, 1.0, 1.0, 2), "2": Range(1.8, 1.8, 1.8, 2)}
    return {
        "config": {"events": 600, "size": "small", "backend": "litert"},
        "cpus": 2,
        "counts": {n: to_json(c) for n, c in counts.items()},
        "speedup": {n: to_json(r) for n, r in speedup.items()},
    }


def test_a_scaleout_result_reads_back_typed_after_its_json_trip(tmp_path: Path) -> None:
    result = saved(scaleout_result())

    record = ScaleoutResult.of(result)
    two = record.counts["2"]
    assert (record.events, record.backend, record.cpus) == (600, "litert", 2)
    assert two.throughput_per_s == 180.0
    assert two.throughput == Range(180.0, 180.0, 180.0, 2)
    assert two.cpu_ms_per_image == pytest.approx(1000 * 4.0 / 600)
    assert two.consumers_busy == pytest.approx(0.8)
    assert two.sustained_per_s is None  # NaN, saved as null
    assert [c.cpu for c in two.per_consumer] == [[0], [1]]
    assert len(two.runs) == 2
    assert record.speedup["2"].median == 1.8

    [check] = targets.scaleout_checks(result)
    assert (check.measured, check.met) == ("1.80x", True)
    rows = report.scaleout_tables(result)
    assert rows[2].startswith("| 1 | 6.00 s (6.00")
    assert "1.80x (1.80" in rows[3]
    assert "80% / 90%" in rows[3]
    assert "cpu0: 300, cpu1: 300" in rows[3]
    assert scaleout.summary(result)[2].startswith("  2 consumer(s): drain 3.33 s, 180.0/s, x1.80")
    assert plots.plot_scaleout(result, tmp_path / "scaleout.png").stat().st_size > 0


def test_a_scaleout_result_with_a_misspelt_key_is_refused() -> None:
    result = saved(scaleout_result())
    result["counts"]["1"]["drain"] = {"median": 1.0}  # no min, max, n
    with pytest.raises(ValidationError):
        ScaleoutResult.of(result)


def memory_variant(backend: str, grow_mib: float) -> MemoryVariant:
    # Idle at 100 MiB for 2 s, then 40 s of load from 200 MiB, growing by `grow_mib` overall.
    samples = [(t / 4, 100.0, 100.0) for t in range(8)]
    samples += [(2 + t / 4, 200.0 + grow_mib * t / 160, 250.0) for t in range(161)]
    analysis = memory.analyse(samples, 2.0, 42.0, 0.3)
    return MemoryVariant(
        **analysis,
        backend=backend,
        env={},
        images_in_stage={"fetch_wait": 3.0, "fetch": 1.0, "decode_wait": 2.5, "decode": 1.5},
        photo_mean_mib=2.0,
        waiting_bytes_mib=8.0,
        in_flight=[(2.0, 10.0), (3.0, math.nan)],
        model_bytes=3 * 2**20,
        classified=400,
        classified_per_s=10.0,
        load_s=(2.0, 42.0),
        samples=samples,
    )


def test_a_memory_result_reads_back_typed_after_its_json_trip(tmp_path: Path) -> None:
    variants = {"litert": memory_variant("litert", 2.0), "leaky": memory_variant("litert", 90.0)}
    result = saved(
        {
            "config": {"warmup_fraction": 0.3},
            "backends": {name: to_json(v) for name, v in variants.items()},
        }
    )

    record = MemoryResult.of(result)
    litert = record.variants["litert"]
    assert record.warmup_fraction == 0.3
    assert (litert.idle_rss_mib, litert.peak_rss_mib, litert.hwm_mib) == (100.0, 202.0, 250.0)
    assert litert.in_flight == [(2.0, 10.0), (3.0, None)]  # the NaN gauge, saved as null
    assert litert.load_seconds == 40.0
    assert litert.undecoded == 4.0

    checks = {c.target: c.met for c in targets.memory_checks(result)}
    assert checks == {
        "memory litert: flat after warm-up": True,
        "memory litert: peak RSS": True,
        "memory leaky: flat after warm-up": False,
        "memory leaky: peak RSS": True,
    }
    rows = report.memory_tables(result)
    assert rows[2].startswith("| litert | 3.0 | 100 | 202 | ")
    assert rows[2].endswith("| 10.0 | 4.0 | 8 |")
    lines = memory.summary(result)
    assert "downloaded and not yet decoded 4.0 (~8 MiB" in lines[2]
    assert plots.plot_memory(result, tmp_path / "memory.png").stat().st_size > 0
