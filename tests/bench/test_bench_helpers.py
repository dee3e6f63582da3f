"""The pure helpers of the benchmarks: statistics, /proc parsing, target checks, decoding."""

from __future__ import annotations

import io
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from bench import targets
from bench.decoding import decode_with_draft, decode_without_draft
from bench.procs import cpu_shares, parse_proc_stat_busy_s, parse_stat_cpu_s, parse_status_kib
from bench.records import ColdRatios, CriticalPath, Range, to_json
from bench.scenarios.cold import Config as ColdConfig
from bench.scenarios.cold import round_order, variants
from bench.stats import (
    HistogramSnapshot,
    histogram_quantile,
    parse_histograms,
    percentile,
    slope_per_s,
    spread,
    sustained_rate,
)
from consumer.model_input import INPUT_SHAPE

METRICS = """\
# HELP birdwatch_stage_seconds Seconds per image
# TYPE birdwatch_stage_seconds histogram
birdwatch_stage_seconds_bucket{le="0.1",stage="fetch"} 2.0
birdwatch_stage_seconds_bucket{le="0.5",stage="fetch"} 6.0
birdwatch_stage_seconds_bucket{le="+Inf",stage="fetch"} 8.0
birdwatch_stage_seconds_count{stage="fetch"} 8.0
birdwatch_stage_seconds_sum{stage="fetch"} 2.4
birdwatch_stage_seconds_bucket{le="0.1",stage="decode"} 4.0
birdwatch_stage_seconds_bucket{le="0.5",stage="decode"} 4.0
birdwatch_stage_seconds_bucket{le="+Inf",stage="decode"} 4.0
birdwatch_stage_seconds_count{stage="decode"} 4.0
birdwatch_stage_seconds_sum{stage="decode"} 0.2
"""


def test_spread_and_percentile() -> None:
    s = spread([3.0, 1.0, 2.0, 10.0])
    assert (s.median, s.low, s.high, s.n) == (2.5, 1.0, 10.0, 4)
    assert math.isnan(spread([]).median)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert percentile([0.0, 10.0], 0.99) == pytest.approx(9.9)
    assert math.isnan(percentile([], 0.5))


def test_sustained_rate_leaves_out_the_fill_up() -> None:
    # A slow start (first item after 1 s), then 10 per second.
    times = [1.0] + [1.0 + i / 10 for i in range(1, 21)]
    assert sustained_rate(times) == pytest.approx(10.0)
    assert math.isnan(sustained_rate([1.0]))


def test_slope() -> None:
    assert slope_per_s([(0, 1.0), (1, 3.0), (2, 5.0)]) == pytest.approx(2.0)
    assert math.isnan(slope_per_s([(1, 1.0)]))


def test_histogram_quantiles_interpolate_within_buckets() -> None:
    buckets = ((0.1, 2.0), (0.5, 6.0), (math.inf, 8.0))
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.3)
    assert histogram_quantile(buckets, 0.99) == 0.5  # in +Inf: the highest finite bound
    assert math.isnan(histogram_quantile(((math.inf, 0.0),), 0.5))


def test_parse_and_diff_stage_histograms() -> None:
    after = parse_histograms(METRICS, "birdwatch_stage_seconds", "stage")
    assert set(after) == {"fetch", "decode"}
    assert after["fetch"].count == 8
    assert after["fetch"].mean == pytest.approx(0.3)
    before = HistogramSnapshot(((0.1, 1.0), (0.5, 2.0), (math.inf, 2.0)), 0.4, 2.0)
    delta = after["fetch"].minus(before)
    assert delta.count == 6
    assert delta.buckets == ((0.1, 1.0), (0.5, 4.0), (math.inf, 6.0))
    assert delta.summary()["mean"] == pytest.approx(2.0 / 6)


def test_proc_parsers() -> None:
    status = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert parse_status_kib(status, "VmRSS") == 102400
    assert parse_status_kib(status, "VmSwap") is None
    stat = "42 (a b) S 1 1 1 0 -1 0 0 0 0 0 250 150 0 0 20 0 1 0"
    tick = os.sysconf("SC_CLK_TCK")
    assert parse_stat_cpu_s(stat) == pytest.approx(400 / tick)
    proc_stat = "cpu  100 0 50 1000 10 0 0 0 0 0\ncpu0 1\n"
    assert parse_proc_stat_busy_s(proc_stat) == pytest.approx(150 / tick)


def test_cpu_shares_of_the_machine() -> None:
    shares = cpu_shares({"consumer0": 1.0, "driver": 0.5}, 2.5, 2.0, 2)
    assert shares["consumer0_cpu_s"] == 1.0
    assert shares["others_cpu_s"] == pytest.approx(1.0)
    assert shares["ours_busy"] == pytest.approx(1.5 / 4)
    assert shares["machine_busy"] == pytest.approx(2.5 / 4)


def test_cpu_shares_never_put_the_machine_below_our_own_processes() -> None:
    # /proc/stat is tick-sampled: on a short window it can read less than our processes used.
    shares = cpu_shares({"consumer0": 0.7}, 0.6, 2.0, 2)
    assert shares["others_cpu_s"] == 0.0
    assert shares["machine_busy"] == shares["ours_busy"] == pytest.approx(0.7 / 4)


def test_cold_rounds_rotate_every_variant_through_every_slot() -> None:
    names = variants(ColdConfig())
    assert names == ["naive-litert", "birdwatch-litert", "naive-tensorflow", "birdwatch-tensorflow"]
    orders = [round_order(names, i) for i in range(4)]
    for slot in range(4):
        assert {order[slot] for order in orders} == set(names)


def test_target_checks() -> None:
    ratios = ColdRatios(vs_original=Range(20.0, 18.0, 22.0, 3))
    cold = {
        "ratios": {"litert": to_json(ratios)},
        "variants": {"birdwatch-litert": {"wall_s": {"median": 1.2}}},
        "litert_imports_tensorflow": False,
    }
    path = CriticalPath(0.1, 0.5, 0.3, 0.4, 1.0, "model")
    limits = {"critical_path": {"litert": to_json(path)}}
    checks = targets.all_checks({"cold": cold, "limits": limits})
    assert [c.met for c in checks] == [True, True, True]
    assert targets.is_flat(9.0, 100.0)
    assert targets.is_flat(19.0, 1000.0)
    assert not targets.is_flat(30.0, 1000.0)
    scaleout = {
        "config": {"events": 600, "size": "small", "backend": "litert"},
        "counts": {},
        "speedup": {"2": to_json(Range(1.5, 1.4, 1.6, 3))},
    }
    assert targets.scaleout_checks(scaleout)[0].met is False
    assert any("MISSED" in line for line in targets.table([targets.Check("t", "1", "2", False)]))


def test_decoders_agree_on_shape_and_roughly_on_pixels() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (1600, 1200), (200, 40, 40)).save(buf, "JPEG", quality=90)
    draft, full = decode_with_draft(buf.getvalue()), decode_without_draft(buf.getvalue())
    assert draft.shape == full.shape == INPUT_SHAPE
    assert np.abs(draft.astype(int) - full.astype(int)).mean() < 5


def test_params_override_scenario_settings() -> None:
    from bench.runner import with_params

    configs = with_params({}, ["memory.seconds=120", "scaleout.consumers=1,2", "cold.runs=5"])
    assert configs["memory"].seconds == 120.0
    assert configs["scaleout"].consumers == (1, 2)
    assert configs["cold"].runs == 5
    with pytest.raises(ValueError, match=r"SCENARIO\.FIELD"):
        with_params({}, ["seconds=1"])
    chosen = with_params(
        {}, ["memory.variants=litert-1cpu,litert", "knobs.pairs=litert: 1 inference thread"]
    )
    assert [v.name for v in chosen["memory"].variants] == ["litert-1cpu", "litert"]
    assert [p.name for p in chosen["knobs"].pairs] == ["litert: 1 inference thread"]
    with pytest.raises(ValueError, match="choose from"):
        with_params({}, ["memory.variants=gpu"])


def test_settled_growth_compares_the_thirds_after_warm_up() -> None:
    from bench.scenarios.memory import settled_growth_mib

    # Warm-up ramp to 200, then a sawtooth 200/220 that ends 30 MiB higher.
    samples = [(t / 10, 100.0 + t, 0.0) for t in range(100)]
    samples += [
        (10 + t / 10, 200.0 + 20 * (t % 2) + (30 if t >= 200 else 0), 0.0) for t in range(300)
    ]
    assert settled_growth_mib(samples, (0.0, 40.0), 0.3) == pytest.approx(30.0, abs=1.0)
    assert math.isnan(settled_growth_mib(samples[:2], (0.0, 40.0), 0.3))


def test_records_round_trip_and_reject_a_missing_key() -> None:
    from pydantic import ValidationError

    from bench.common import machine
    from bench.records import Link, RunInfo, from_json

    path = CriticalPath(0.1, 0.5, 0.3, 0.4, 1.0, "model")
    assert from_json(CriticalPath, json.loads(json.dumps(to_json(path)))) == path
    assert path.part("total_s") == 1.0
    with pytest.raises(KeyError):
        path.part("bound_by")
    with pytest.raises(ValidationError):
        from_json(CriticalPath, {"total_s": 1.0})
    info = RunInfo("cold", 2.0, (0.5, 0.4, 0.3), machine(), Link(0.05, 1e8))
    saved = json.loads(json.dumps({"variants": {}, **to_json(info)}))
    assert RunInfo.of(saved) == info
