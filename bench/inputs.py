"""Realistic benchmark inputs, generated once into `bench/out/` and reused.

Photos: every photo of the data folder (except the segmentation mask) becomes
- a *large* photo like the Wikipedia originals the service was written for: upscaled with
  Pillow's LANCZOS filter to 4000x3000 (12 MP; the full frame is stretched, not cropped, as the
  model sees the full frame anyway), with a faint luminance grain (Gaussian, sigma 3 levels,
  seed 7) standing in for the sensor noise and fine detail of a real 12 MP photo, saved as JPEG
  quality 95: 2-5 MB each (an upscaled photo without grain compresses to under 2 MB);
- a *small* photo of about 100 KB: resized to 640 px on the long side, the same grain,
  JPEG quality 92.

Model: the real TFLite model of the data folder, and for the TensorFlow backend a stand-in of the
real model's cost (the real `birds_V1/1` SavedModel cannot be downloaded here): MobileNet V2
(alpha 1.0, 224x224) with a 965-way softmax and deterministic random weights (seed 7), exported
as a TF2 SavedModel whose `serving_default` signature takes float32 [N, 224, 224, 3] in [0, 1]
and returns probabilities, packed as a TF Hub-style `.tar.gz` (files at the archive root).

    python -m bench.inputs photos          # (re)generate the photos if their recipe changed
    python -m bench.inputs standin PATH    # write the stand-in archive to PATH
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.paths import DATA_DIR, OUT_DIR, PYTHON, REAL_LABELS, REAL_TFLITE, REPO
from consumer.model_input import INPUT_SHAPE
from consumer.testing.archives import write_tar_gz

SKIPPED_SOURCES = ("segmentation",)
SOURCE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
STANDIN_NAME = "mobilenet_v2_965.tar.gz"


@dataclass(frozen=True)
class PhotoRecipe:
    large_size: tuple[int, int] = (4000, 3000)
    large_quality: int = 95
    small_long_side: int = 640
    small_quality: int = 92
    grain_sigma: float = 3.0
    seed: int = 7


@dataclass(frozen=True)
class PhotoSet:
    """Generated photos: the same subjects at two sizes, in the same order."""

    large: list[Path]
    small: list[Path]
    root: Path

    def sizes(self, which: str) -> list[int]:
        return [p.stat().st_size for p in (self.large if which == "large" else self.small)]


@dataclass(frozen=True)
class Models:
    """The files the "internet" serves for the model side."""

    tflite: Path
    labels: Path
    standin_archive: Path


def source_photos(source_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in source_dir.iterdir()
        if p.suffix.lower() in SOURCE_SUFFIXES and not any(s in p.name for s in SKIPPED_SOURCES)
    )


def _flat_rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        if img.mode in ("RGBA", "LA", "P"):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return img.convert("RGB")


def _with_grain(img: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    if sigma <= 0:
        return img
    pixels = np.asarray(img, dtype=np.int16)
    grain = rng.normal(0.0, sigma, (*pixels.shape[:2], 1)).astype(np.int16)
    return Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))


def _small_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    if width >= height:
        return long_side, max(1, round(long_side * height / width))
    return max(1, round(long_side * width / height)), long_side


def make_photos(
    source_dir: Path, out_dir: Path, recipe: PhotoRecipe | None = None, limit: int | None = None
) -> PhotoSet:
    """Generate (or reuse, when the recipe and sources are unchanged) the large and small photos."""
    recipe = recipe or PhotoRecipe()
    sources = source_photos(source_dir)[:limit]
    if not sources:
        raise FileNotFoundError(f"no photos in {source_dir}")
    large_dir, small_dir = out_dir / "large", out_dir / "small"
    stamp = out_dir / "recipe.json"
    wanted = {"recipe": asdict(recipe), "sources": [p.name for p in sources]}
    large = [large_dir / f"{p.stem}.jpg" for p in sources]
    small = [small_dir / f"{p.stem}.jpg" for p in sources]
    if (
        stamp.exists()
        and json.loads(stamp.read_text()) == json.loads(json.dumps(wanted))
        and all(p.exists() for p in [*large, *small])
    ):
        return PhotoSet(large, small, out_dir)
    large_dir.mkdir(parents=True, exist_ok=True)
    small_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(recipe.seed)
    for source, big_path, small_path in zip(sources, large, small, strict=True):
        rgb = _flat_rgb(source)
        big = rgb.resize(recipe.large_size, Image.Resampling.LANCZOS)
        _with_grain(big, recipe.grain_sigma, rng).save(
            big_path, "JPEG", quality=recipe.large_quality
        )
        size = _small_size(rgb.width, rgb.height, recipe.small_long_side)
        little = rgb.resize(size, Image.Resampling.LANCZOS)
        _with_grain(little, recipe.grain_sigma, rng).save(
            small_path, "JPEG", quality=recipe.small_quality
        )
    stamp.write_text(json.dumps(wanted, indent=2))
    return PhotoSet(large, small, out_dir)


# --- the TensorFlow stand-in ---------------------------------------------------------------------


def write_standin_archive(
    path: Path, alpha: float = 1.0, classes: int = 965, seed: int = 7
) -> None:
    """Export MobileNet V2 with random weights as a TF Hub-style SavedModel `.tar.gz` at `path`.

    Imports TensorFlow (seconds): run it in a child process (`ensure_standin`) to keep the
    benchmark driver light.
    """
    import tensorflow as tf
    import tf_keras  # type: ignore[import-untyped]

    tf_keras.utils.set_random_seed(seed)
    base = tf_keras.applications.MobileNetV2(
        input_shape=INPUT_SHAPE,
        alpha=alpha,
        weights=None,
        classes=classes,
        classifier_activation="softmax",
    )
    module = tf.Module()
    module.m = base

    @tf.function(input_signature=[tf.TensorSpec(shape=[None, *INPUT_SHAPE], dtype=tf.float32)])  # type: ignore[untyped-decorator]
    def serve(images: Any) -> dict[str, Any]:
        # MobileNet V2 wants [-1, 1]; the TF Hub image convention is [0, 1].
        return {"default": module.m(images * 2.0 - 1.0, training=False)}

    module.serve = serve
    with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
        export = Path(tmp) / "model"
        tf.saved_model.save(module, str(export), signatures={"serving_default": serve})
        write_tar_gz(export, path)


def ensure_standin(out_dir: Path) -> Path:
    """The cached stand-in archive, built in a child process on first use (about 10 s)."""
    path = out_dir / STANDIN_NAME
    if not path.exists():
        subprocess.run(
            [PYTHON, "-m", "bench.inputs", "standin", str(path)],
            check=True,
            cwd=str(REPO),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return path


def ensure_models(data_dir: Path = DATA_DIR, out_dir: Path = OUT_DIR) -> Models:
    tflite, labels = data_dir / REAL_TFLITE, data_dir / REAL_LABELS
    for needed in (tflite, labels):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} is missing (see ../shared/data/README.md)")
    return Models(tflite, labels, ensure_standin(out_dir / "models"))


def ensure_photos(data_dir: Path = DATA_DIR, out_dir: Path = OUT_DIR) -> PhotoSet:
    return make_photos(data_dir / "photos", out_dir / "photos")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("photos")
    standin = sub.add_parser("standin")
    standin.add_argument("path", type=Path)
    standin.add_argument("--alpha", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.what == "photos":
        photos = ensure_photos()
        for big, little in zip(photos.large, photos.small, strict=True):
            print(
                f"{big.stat().st_size / 1e6:6.2f} MB {big}   {little.stat().st_size / 1e3:5.0f} KB"
            )
    else:
        write_standin_archive(args.path, alpha=args.alpha)
        print(f"{args.path.stat().st_size / 1e6:.1f} MB {args.path}")


if __name__ == "__main__":
    main()
