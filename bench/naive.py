"""The original algorithm, kept for comparison only: what Birdwatch replaced.

Per image, one after the other: load the model again (`tensorflow_hub.load` of the SavedModel,
or a new LiteRT interpreter for a `.tflite`), download and parse the label map again, download
the image with blocking urllib, decode it at full resolution, run a batch of one, sort all 965
scores (np.argsort) and print the top 3 (one JSON line per image).

Like `hub.load(handle)` in the original, the model *file* is downloaded once into a cache (empty
at the start of a cold run) and re-read from disk for every later image; the label map is
downloaded for every image, as `pd.read_csv(url)` did. This keeps the baseline conservative:
re-downloading the model per image as well would make it slower still.

    python -m bench.naive --model URL --labels URL [--cache DIR] IMAGE_URL...
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

Predict = Callable[[NDArray[np.uint8]], NDArray[np.float32]]


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - benchmark URLs only
        data: bytes = resp.read()
        return data


def fetch_model_file(model_url: str, cache: Path) -> Path:
    """The model in the cache, downloaded (and unpacked) on a miss, as hub.load's cache does."""
    key = hashlib.sha1(model_url.encode()).hexdigest()  # noqa: S324 - a cache key
    if model_url.endswith(".tflite"):
        path = cache / f"{key}.tflite"
        if not path.exists():
            cache.mkdir(parents=True, exist_ok=True)
            path.write_bytes(download(model_url))
        return path
    folder = cache / key
    if not (folder / "saved_model.pb").exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(download(model_url)), mode="r:*") as archive:
            archive.extractall(folder, filter="data")
    return folder


def load_model(path: Path) -> Predict:
    """A fresh model object for `path` (the expensive part the original paid per image)."""
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path))
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

        def run_tflite(batch: NDArray[np.uint8]) -> NDArray[np.float32]:
            interp.set_tensor(inp["index"], batch)
            interp.invoke()
            raw = np.asarray(interp.get_tensor(out["index"]))
            scale, zero = out["quantization"]
            if scale:
                return np.asarray((raw.astype(np.float32) - zero) * scale, dtype=np.float32)
            return np.asarray(raw, dtype=np.float32)

        return run_tflite

    import tensorflow as tf
    import tensorflow_hub as hub

    module: Any = hub.load(str(path))
    signature = module.signatures.get("default") or module.signatures["serving_default"]
    (input_name,) = signature.structured_input_signature[1].keys()

    def run_tf(batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        images = tf.constant(batch.astype(np.float32) / 255.0)
        outputs = signature(**{input_name: images})
        probs = outputs["default"] if "default" in outputs else next(iter(outputs.values()))
        return np.asarray(probs.numpy(), dtype=np.float32)

    return run_tf


def parse_labels(data: bytes) -> dict[int, str]:
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    return {int(r[0]): r[1] for r in rows[1:] if r}


def classify_one(model_url: str, labels_url: str, image_url: str, cache: Path) -> dict[str, Any]:
    predict = load_model(fetch_model_file(model_url, cache))
    labels = parse_labels(download(labels_url))
    image = Image.open(io.BytesIO(download(image_url))).convert("RGB")  # full-resolution decode
    pixels = np.asarray(image.resize((224, 224), Image.Resampling.BILINEAR), dtype=np.uint8)
    probs = predict(pixels[np.newaxis])[0]
    best = np.argsort(probs)[::-1][:3]  # a full sort of every score
    return {
        "url": image_url,
        "top3": [{"label": labels[int(i)], "score": round(float(probs[i]), 6)} for i in best],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help=".tflite or SavedModel .tar.gz URL")
    parser.add_argument("--labels", required=True, help="label map CSV URL")
    parser.add_argument(
        "--cache", type=Path, default=None, help="model cache (default: a temp dir)"
    )
    parser.add_argument("images", nargs="+")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="naive-cache-") as tmp:
        cache = args.cache or Path(tmp)
        for url in args.images:
            result = classify_one(args.model, args.labels, url, cache)
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
