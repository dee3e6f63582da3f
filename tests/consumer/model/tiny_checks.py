"""What the tiny generated models answer, for the backend tests: coloured batches, their
expected top 3, and the check of a classifier's probabilities against the reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from consumer.model import (
    Classifier,
    ModelArtifact,
)
from consumer.model_input import INPUT_SHAPE, INPUT_SIZE
from consumer.testing.models import (
    BLUE_CLASS,
    GREEN_CLASS,
    GREY_CLASS,
    NUM_CLASSES,
    RED_CLASS,
    expected_probabilities,
    expected_top1,
)

RGB = tuple[int, int, int]

COLOURS: dict[str, RGB] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "grey": (128, 128, 128),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "dull-red": (200, 60, 60),
}

EXPECTED_TOP3 = {
    "red": [RED_CLASS, RED_CLASS + 1, RED_CLASS + 2],
    "green": [GREEN_CLASS, GREEN_CLASS + 1, GREEN_CLASS + 2],
    "blue": [BLUE_CLASS, BLUE_CLASS + 1, BLUE_CLASS + 2],
    "grey": [GREY_CLASS, 963, 962],
    "black": [GREY_CLASS, 963, 962],
    "white": [GREY_CLASS, 963, 962],
    "dull-red": [RED_CLASS, RED_CLASS + 1, RED_CLASS + 2],
}

# The tiny .tflite reads pixel p as channel p / 256; the SavedModels get p / 255.
TFLITE_DIVISOR = 256.0

TF_DIVISOR = 255.0

# The uint8 model's probabilities are quantized in steps of 1/256.
TFLITE_ATOL = 0.02

# Float models: float32 channel means over 50176 pixels drift from the float64 reference by ~1e-4.
FLOAT_ATOL = 5e-4


def solid(rgb: RGB, n: int = 1) -> NDArray[np.uint8]:
    return np.broadcast_to(np.array(rgb, np.uint8), (n, *INPUT_SHAPE)).copy()


def mostly(channel: int, seed: int) -> NDArray[np.uint8]:
    """A noisy image whose `channel` clearly dominates (the kind a real photo of a colour gives)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 90, (1, *INPUT_SHAPE), dtype=np.uint8)
    image[..., channel] = rng.integers(150, 256, (1, INPUT_SIZE, INPUT_SIZE), dtype=np.uint8)
    return image


def channel_means(batch: NDArray[np.uint8], divisor: float) -> list[tuple[float, float, float]]:
    means = batch.reshape(batch.shape[0], -1, 3).mean(axis=1) / divisor
    return [(float(r), float(g), float(b)) for r, g, b in means]


def artifact(path: Path, kind: str) -> ModelArtifact:
    size = path.stat().st_size if path.is_file() else 0
    return ModelArtifact(str(path), kind, path, size, False, 0.0)


def assert_matches_tiny_model(
    classifier: Classifier, batch: NDArray[np.uint8], divisor: float, atol: float
) -> NDArray[np.float32]:
    probs = classifier.predict(batch)
    means = channel_means(batch, divisor)
    assert probs.shape == (batch.shape[0], NUM_CLASSES)
    assert probs.dtype == np.float32
    assert probs.min() >= 0.0
    assert probs.max() <= 1.0
    assert list(probs.argmax(axis=1)) == [expected_top1(m) for m in means]
    expected = np.stack([expected_probabilities(m) for m in means])
    np.testing.assert_allclose(probs, expected, atol=atol)
    return probs
