"""*limits*: what this machine allows, each part measured in isolation.

- inference throughput per backend by batch size and thread count (a fresh process each, which
  also times the backend's import, load and warm-up);
- decode throughput of large and small photos with the service's decoder (`draft`) and without;
- model download (+ unpack) through the loopback internet with the service's `ModelFetcher`;
- the image path of a cold run: 5 large photos fetched concurrently and decoded in the pool;
- process start-up: the interpreter plus Birdwatch's imports.

Derived: the critical path of a cold run, startup + max(model path, image path) + inference of
one batch; and the warm stream ceiling per CPU budget, both as the issue defines it,
min(decode, inference throughput) with each stage owning the budget, and as the stages really
run here, sharing it: 1 / (1 / decode + 1 / inference throughput), both at the budget's thread
count, as the two stages take turns on the same cores.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import BACKENDS, SIZES, Backend, BenchContext, Size, fmt
from bench.measure import (
    critical_path,
    decode_rate,
    image_path_s,
    load_and_infer,
    model_fetch_s,
    startup_s,
)
from bench.records import to_json
from bench.stats import spread

NAME = "limits"
NEEDS_KAFKA = False


@dataclass(frozen=True)
class Config:
    backends: tuple[Backend, ...] = BACKENDS
    threads: tuple[int, ...] = (1, 2)
    batches: tuple[int, ...] = (1, 8, 32)
    sizes: tuple[Size, ...] = SIZES
    seconds: float = 1.5  # per throughput measurement (three blocks)
    repeats: int = 3  # downloads, image path, start-up
    cold_images: int = 5
    # Also TensorFlow with oneDNN off, as the service ran it before the fix (docs/PERFORMANCE.md).
    tf_without_onednn: bool = True


def best_inference(inference: dict[str, Any], backend: str, threads: int) -> float:
    """Images/s at the best batch size for `backend` with `threads`."""
    per_batch = inference[backend][str(threads)]
    return float(max(v["median"] for v in per_batch.values()))


def derive(result: dict[str, Any], config: Config) -> dict[str, Any]:
    """Critical path of a cold run and warm stream ceilings from the measured parts."""
    threads = max(config.threads)
    critical: dict[str, Any] = {}
    ceiling: dict[str, Any] = {}
    for backend in config.backends:
        per_batch = result["inference"][backend][str(threads)]
        near = min((int(b) for b in per_batch), key=lambda b: abs(b - config.cold_images))
        load = result["model_load"][backend]
        critical[backend] = to_json(
            critical_path(
                backend,
                result["startup_s"]["median"],
                result["download"][backend]["fetch_s"]["median"],
                {k: load[k]["median"] for k in ("import_s", "load_s", "warmup_s")},
                result["image_path_s"]["median"],
                config.cold_images / per_batch[str(near)]["median"],
            )
        )
        ceiling[backend] = {}
        for size in config.sizes:
            per_size: dict[str, Any] = {}
            decode = result["decode"][size]["draft"]
            for cores in config.threads:
                dec = decode[str(cores)]["median"]
                inf = best_inference(result["inference"], backend, cores)
                per_size[str(cores)] = {
                    "decode": dec,
                    "inference": inf,
                    "min": min(dec, inf),
                    # Both stages take turns on the same cores: their times per image add up.
                    "shared": 1 / (1 / dec + 1 / inf),
                }
            ceiling[backend][size] = per_size
    return {"critical_path": critical, "ceiling": ceiling}


async def run(ctx: BenchContext, config: Config | None = None) -> dict[str, Any]:
    config = config or Config()
    site = ctx.site
    result: dict[str, Any] = {"config": asdict(config), "cpus": os.cpu_count()}

    result["startup_s"] = spread([await startup_s() for _ in range(config.repeats)]).as_dict()

    inference: dict[str, Any] = {}
    loads: dict[str, dict[str, list[float]]] = {}
    for backend in config.backends:
        inference[backend] = {}
        for threads in config.threads:
            data = await load_and_infer(
                backend, site.model_file(backend), threads, config.batches, config.seconds
            )
            inference[backend][str(threads)] = data["inference"]
            for key in ("import_s", "unpack_s", "load_s", "warmup_s"):
                if key in data:
                    loads.setdefault(backend, {}).setdefault(key, []).append(data[key])
    if config.tf_without_onednn and "tensorflow" in config.backends:
        most = max(config.threads)
        data = await load_and_infer(
            "tensorflow",
            site.model_file("tensorflow"),
            most,
            config.batches,
            config.seconds,
            env={"TF_ENABLE_ONEDNN_OPTS": "0"},
        )
        inference["tensorflow-onednn-off"] = {str(most): data["inference"]}
    result["inference"] = inference
    result["model_load"] = {
        b: {k: spread(v).as_dict() for k, v in parts.items()} for b, parts in loads.items()
    }

    decode: dict[str, Any] = {}
    for size in config.sizes:
        files = site.photos.large if size == "large" else site.photos.small
        decode[size] = {}
        for variant in ("draft", "full"):
            decode[size][variant] = {}
            for threads in config.threads:
                data = await decode_rate(files, variant, threads, config.seconds)
                decode[size][variant][str(threads)] = data["images_per_s"]
                decode[size]["mean_bytes"] = data["mean_bytes"]
    result["decode"] = decode

    download: dict[str, Any] = {}
    for backend in config.backends:
        times, size_bytes = [], 0
        for _ in range(config.repeats):
            seconds, size_bytes = await model_fetch_s(site.model_url(backend))
            times.append(seconds)
        download[backend] = {
            "fetch_s": spread(times).as_dict(),
            "bytes": size_bytes,
            "ideal_s": site.profile.transfer_s(site.model_file(backend).stat().st_size),
        }
    result["download"] = download

    urls = site.photo_urls("large")[: config.cold_images]
    paths = [await image_path_s(urls, max(config.threads)) for _ in range(config.repeats)]
    result["image_path_s"] = spread(paths).as_dict()
    result["link"] = asdict(site.profile)
    result.update(derive(result, config))
    return result


def summary(result: dict[str, Any]) -> list[str]:
    lines = ["limits: inference images/s by batch (threads 1 | threads 2 ...)"]
    for backend, per_threads in result["inference"].items():
        for threads, per_batch in per_threads.items():
            row = "  ".join(f"b{b}: {fmt(v['median'], 0)}" for b, v in per_batch.items())
            lines.append(f"  {backend:<10} threads {threads}: {row}")
    lines.append("limits: decode images/s (draft | full), per thread count")
    for size, variants in result["decode"].items():
        for variant in ("draft", "full"):
            row = "  ".join(f"t{t}: {fmt(v['median'], 0)}" for t, v in variants[variant].items())
            lines.append(f"  {size:<5} {variant:<5} {row}")
    for backend, cp in result["critical_path"].items():
        lines.append(
            f"  cold critical path {backend:<10} {fmt(cp['total_s'])} s = startup "
            f"{fmt(cp['startup_s'])} + max(model {fmt(cp['model_path_s'])}, images "
            f"{fmt(cp['image_path_s'])}) + inference {fmt(cp['inference_s'], 3)}"
        )
    for backend, sizes in result["ceiling"].items():
        for size, budgets in sizes.items():
            row = "  ".join(
                f"{c} core(s): min {fmt(v['min'], 0)} / shared {fmt(v['shared'], 0)}"
                for c, v in budgets.items()
            )
            lines.append(f"  warm ceiling {backend:<10} {size:<5} {row}")
    return lines
