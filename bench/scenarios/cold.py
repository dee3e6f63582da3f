"""*cold*: a fresh process and an empty model cache classify 5 large photos; wall time from the
process start to its last result, Birdwatch (each backend) against the naive baseline.

The variants run in rounds, A B C D then B C D A and so on, so a slow spell of this shared
machine hits every variant alike; ratios are taken within a round (paired) and reported as the
median and range over the rounds. "vs original" compares with the original algorithm as it ran
(TensorFlow Hub SavedModel); "vs same backend" with the naive algorithm on the same backend.

Each round also measures the parts of the critical path (start-up, model fetch, backend import,
load and warm-up, the image path, one inference) as one more slot of the rotation, so the ratio
of a cold run to its critical path is taken under the same conditions too.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from bench.cold_runs import probe_tensorflow_import, run_variant
from bench.common import BACKENDS, Backend, BenchContext, fmt
from bench.measure import (
    cpu_count,
    critical_path,
    image_path_s,
    load_and_infer,
    model_fetch_s,
    startup_s,
)
from bench.records import CriticalPath, cold_ratios, to_json
from bench.stats import ratio, spread

NAME = "cold"
NEEDS_KAFKA = False
ORIGINAL = "naive-tensorflow"


@dataclass(frozen=True)
class Config:
    runs: int = 3
    images: int = 5
    backends: tuple[Backend, ...] = BACKENDS
    naive_backends: tuple[Backend, ...] = BACKENDS
    critical_path: bool = True
    timeout_s: float = 300.0


def variants(config: Config) -> list[str]:
    """Variant names in the order of the first round."""
    names = []
    for backend in BACKENDS:
        if backend in config.naive_backends:
            names.append(f"naive-{backend}")
        if backend in config.backends:
            names.append(f"birdwatch-{backend}")
    return names


CRITICAL_PATH = "critical-path"


async def measure_critical_path(
    ctx: BenchContext, urls: list[str], config: Config
) -> dict[str, Any]:
    """The parts of a cold run, each measured alone, and the critical path they make."""
    site = ctx.site
    start = time.perf_counter()
    startup = await startup_s()
    images = await image_path_s(urls, cpu_count())
    per_backend: dict[str, Any] = {}
    for backend in config.backends:
        fetch, _ = await model_fetch_s(site.model_url(backend))
        parts = await load_and_infer(
            backend, site.model_file(backend), cpu_count(), [len(urls)], 0.3
        )
        inference = len(urls) / parts["inference"][str(len(urls))]["median"]
        path = critical_path(backend, startup, fetch, parts, images, inference)
        per_backend[backend] = to_json(path)
        per_backend[backend]["fetch_s"] = fetch
        per_backend[backend]["loading"] = {
            k: parts[k] for k in ("import_s", "load_s", "warmup_s") if k in parts
        }
    return {"wall_s": time.perf_counter() - start, "per_backend": per_backend}


def round_order(names: list[str], round_index: int) -> list[str]:
    """The variants rotated by the round number: every variant takes every slot in turn."""
    if not names:
        return []
    k = round_index % len(names)
    return names[k:] + names[:k]


async def run(ctx: BenchContext, config: Config | None = None) -> dict[str, Any]:
    config = config or Config()
    urls = ctx.site.photo_urls("large")[: config.images]
    names = variants(config) + ([CRITICAL_PATH] if config.critical_path else [])
    log_dir = ctx.out_dir / "logs" / NAME
    log_dir.mkdir(parents=True, exist_ok=True)
    rounds: list[dict[str, dict[str, Any]]] = []
    for index in range(config.runs):
        done: dict[str, dict[str, Any]] = {}
        for name in round_order(names, index):
            if name == CRITICAL_PATH:
                done[name] = await measure_critical_path(ctx, urls, config)
            else:
                done[name] = await run_variant(ctx, name, urls, config.timeout_s, log_dir)
        rounds.append(done)

    by_variant: dict[str, Any] = {}
    for name in (n for n in names if n != CRITICAL_PATH):
        walls = [r[name]["wall_s"] for r in rounds]
        by_variant[name] = {"wall_s": spread(walls).as_dict(), "runs": [r[name] for r in rounds]}
        if name.startswith("birdwatch-"):
            keys = {k for r in rounds for k in r[name].get("breakdown", {})}
            by_variant[name]["breakdown_median"] = {
                k: spread(r[name]["breakdown"].get(k, float("nan")) for r in rounds).median
                for k in sorted(keys)
            }

    ratios: dict[str, dict[str, Any]] = {}
    for backend in config.backends:
        ours = f"birdwatch-{backend}"
        entry: dict[str, Any] = {}
        if ORIGINAL in names:
            entry["vs_original"] = spread(
                ratio(r[ORIGINAL]["wall_s"], r[ours]["wall_s"]) for r in rounds
            ).as_dict()
        if f"naive-{backend}" in names:
            entry["vs_same_backend"] = spread(
                ratio(r[f"naive-{backend}"]["wall_s"], r[ours]["wall_s"]) for r in rounds
            ).as_dict()
        if CRITICAL_PATH in names:
            entry["vs_critical_path"] = spread(
                ratio(r[ours]["wall_s"], r[CRITICAL_PATH]["per_backend"][backend]["total_s"])
                for r in rounds
            ).as_dict()
            entry["critical_path"] = {
                k: spread(r[CRITICAL_PATH]["per_backend"][backend][k] for r in rounds).as_dict()
                for k in CriticalPath.PARTS
            }
        ratios[backend] = entry

    probe = (
        await probe_tensorflow_import(ctx, urls, log_dir) if "litert" in config.backends else None
    )
    return {
        "config": asdict(config),
        "critical_path_rounds": [r.get(CRITICAL_PATH) for r in rounds],
        "images": urls,
        "image_bytes": ctx.site.photos.sizes("large")[: config.images],
        "variants": by_variant,
        "ratios": ratios,
        "litert_imports_tensorflow": probe,
    }


def summary(result: dict[str, Any]) -> list[str]:
    lines = ["cold: 5 large photos, process start -> last result (s), median [min-max]"]
    for name, data in result["variants"].items():
        w = data["wall_s"]
        lines.append(f"  {name:<22} {fmt(w['median'])} [{fmt(w['min'])}-{fmt(w['max'])}]")
    for backend, entry in cold_ratios(result).items():
        parts = []
        for key, r in (
            ("vs_original", entry.vs_original),
            ("vs_same_backend", entry.vs_same_backend),
            ("vs_critical_path", entry.vs_critical_path),
        ):
            if r is not None:
                parts.append(f"{key} {fmt(r.median, 1)}x [{fmt(r.min, 1)}-{fmt(r.max, 1)}]")
        lines.append(f"  speed-up birdwatch-{backend}: " + ", ".join(parts))
    if result.get("litert_imports_tensorflow") is not None:
        lines.append(f"  LiteRT run imports TensorFlow: {result['litert_imports_tensorflow']}")
    return lines
