"""What every scenario shares: the served "site" (model, labels, photos), the run context, the
machine description and JSON output."""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from bench.inputs import Models, PhotoSet
from bench.netsim import LinkProfile
from bench.procs import load_average
from bench.records import Machine

Backend = Literal["litert", "tensorflow"]
BACKENDS: tuple[Backend, ...] = ("litert", "tensorflow")
Size = Literal["large", "small"]
SIZES: tuple[Size, ...] = ("large", "small")

MODEL_PATHS: dict[Backend, str] = {
    "litert": "/models/birds_V1_3.tflite",
    "tensorflow": "/models/mobilenet_v2_965.tar.gz",
}
LABELS_PATH = "/models/labelmap.csv"


def site_mounts(models: Models, photos: PhotoSet) -> dict[str, Path]:
    """URL path -> file or folder, for the loopback internet."""
    return {
        MODEL_PATHS["litert"]: models.tflite,
        MODEL_PATHS["tensorflow"]: models.standin_archive,
        LABELS_PATH: models.labels,
        "/photos": photos.root,
    }


@dataclass(frozen=True)
class Site:
    """The URLs the benchmarks use, all on the loopback internet."""

    base: str
    models: Models
    photos: PhotoSet
    profile: LinkProfile

    def model_url(self, backend: Backend) -> str:
        return self.base + MODEL_PATHS[backend]

    def model_file(self, backend: Backend) -> Path:
        return self.models.tflite if backend == "litert" else self.models.standin_archive

    @property
    def labels_url(self) -> str:
        return self.base + LABELS_PATH

    def photo_urls(self, size: Size) -> list[str]:
        files = self.photos.large if size == "large" else self.photos.small
        return [f"{self.base}/photos/{f.parent.name}/{f.name}" for f in files]

    def service_env(self, backend: Backend) -> dict[str, str]:
        """BIRDWATCH_* settings pointing the service at this site."""
        return {
            "BIRDWATCH_MODEL_URL": self.model_url(backend),
            "BIRDWATCH_LABELS_URL": self.labels_url,
            "BIRDWATCH_ALLOW_PRIVATE_NETWORKS": "true",
        }


@dataclass
class BenchContext:
    """Where a scenario writes, what it serves, and the broker (Kafka scenarios only)."""

    out_dir: Path
    site: Site
    bootstrap: str | None = None
    netsim_pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def machine() -> Machine:
    """The machine and the versions a result was measured with."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return Machine(
        cpus=os.cpu_count(),
        cpu_model=cpu,
        memory_gib=round(mem_kib / 2**20, 1),
        kernel=platform.release(),
        python=platform.python_version(),
        load_average=load_average(),
        versions={
            d: version(d)
            for d in ("tensorflow", "ai-edge-litert", "pillow", "numpy", "aiohttp", "aiokafka")
        },
    )


def clean_json(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become null, tuples lists, Paths strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def save_json(out_dir: Path, name: str, data: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(clean_json(data), indent=2) + "\n")
    return path


def load_json(out_dir: Path, name: str) -> dict[str, Any] | None:
    path = out_dir / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a table; '-' when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"
