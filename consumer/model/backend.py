"""The one small interface every inference backend implements, and how one is chosen."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import structlog
from numpy.typing import NDArray

from consumer.model.errors import ModelError
from consumer.model.fetch import ModelArtifact
from consumer.native_logs import quiet_native_stderr

log = structlog.get_logger(__name__)

INPUT_SHAPE = (224, 224, 3)


class Classifier(Protocol):
    """Maps a uint8 batch N x 224 x 224 x 3 (RGB 0..255) to probabilities N x classes."""

    @property
    def backend(self) -> str: ...

    @property
    def num_classes(self) -> int: ...

    def predict(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]: ...


@dataclass(frozen=True)
class LoadedModel:
    """A warmed-up classifier with its labels, ready to serve."""

    name: str
    classifier: Classifier
    labels: list[str]
    fetch_s: float
    load_s: float
    size_bytes: int
    from_cache: bool


def load_classifier(artifact: ModelArtifact, threads: int) -> Classifier:
    """Load the backend that fits what was served, then run one warm-up inference.

    Imports are deferred so the LiteRT path never imports TensorFlow.
    """
    start = time.perf_counter()
    classifier: Classifier
    with quiet_native_stderr():
        if artifact.kind == "tflite":
            from consumer.model.litert_backend import LiteRTClassifier

            classifier = LiteRTClassifier(artifact.path, threads)
        else:
            from consumer.model.tf_backend import TensorFlowClassifier

            classifier = TensorFlowClassifier(artifact.path, threads)
        loaded_s = time.perf_counter() - start
        warm = classifier.predict(np.zeros((1, *INPUT_SHAPE), dtype=np.uint8))
    if warm.shape != (1, classifier.num_classes):
        raise ModelError(
            f"warm-up returned shape {warm.shape}, expected (1, {classifier.num_classes})"
        )
    log.info(
        "model_loaded",
        backend=classifier.backend,
        classes=classifier.num_classes,
        load_s=round(loaded_s, 3),
        warmup_s=round(time.perf_counter() - start - loaded_s, 3),
    )
    return classifier


def check_labels(classifier: Classifier, labels: list[str]) -> None:
    if len(labels) != classifier.num_classes:
        raise ModelError(
            f"label map has {len(labels)} labels but the model has {classifier.num_classes} classes"
        )


def top_k(probs: NDArray[np.float32], k: int) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """Indices and scores of the k best classes per row, best first (O(C) per row, no full sort)."""
    k = min(k, probs.shape[1])
    part = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    scores = np.take_along_axis(probs, part, axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(scores, order, axis=1)
