"""Where the benchmarks find their inputs and put their outputs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = Path(os.environ.get("BENCH_OUT_DIR", str(REPO / "bench" / "out")))
# The real TFLite model, label map and photos; never copied into the repository.
DATA_DIR = Path(os.environ.get("BENCH_DATA_DIR", str(REPO.parent / "shared" / "data")))
PYTHON = sys.executable
BIRDWATCH = str(Path(sys.executable).with_name("birdwatch"))

REAL_TFLITE = "aiy_birds_v1/birds_V1_3.tflite"
REAL_LABELS = "aiy_birds_v1/labelmap.csv"
