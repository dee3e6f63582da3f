"""What a model's output is, found at warm-up rather than assumed from its name: a probability
distribution over the classes (used as it is), or logits (a softmax is applied). Anything else
is refused."""

from __future__ import annotations

import numpy as np
import structlog
from numpy.typing import NDArray

from consumer.model.backend import Classifier
from consumer.model.errors import ModelError
from consumer.model_input import INPUT_SHAPE

log = structlog.get_logger(__name__)

# A quantized output rounds the many tiny probabilities to 0 (and some up): the real uint8 model's
# rows sum to 0.66..0.99 on photos and plain images. Float outputs sum to 1 within rounding.
MIN_ROW_SUM = 0.5
MAX_ROW_SUM = 1.05
_TOLERANCE = 1e-3


def probe_batch() -> NDArray[np.uint8]:
    """Two inputs unlike each other: black, and (seeded) noise. The first is the warm-up the
    model needs anyway; the check costs one inference more (a cold start is on its path)."""
    images = np.zeros((2, *INPUT_SHAPE), np.uint8)
    images[1] = np.random.default_rng(0).integers(0, 256, INPUT_SHAPE, dtype=np.uint8)
    return images


def output_form(rows: NDArray[np.float32]) -> str:
    """ "probabilities" when every row is a distribution (non-negative, at most 1, summing to
    about 1), "logits" when the scores cannot be probabilities (negative or above 1);
    `ModelError` otherwise."""
    if not np.all(np.isfinite(rows)):
        raise ModelError("the model's output holds NaN or infinite values")
    sums = rows.sum(axis=1, dtype=np.float64)
    if rows.min() < -_TOLERANCE or rows.max() > 1 + _TOLERANCE:
        return "logits"
    if sums.min() >= MIN_ROW_SUM and sums.max() <= MAX_ROW_SUM:
        return "probabilities"
    raise ModelError(
        f"the model's output is neither probabilities nor logits: scores in [0, 1] whose rows "
        f"sum to {sums.min():.3g}..{sums.max():.3g}, not about 1"
    )


def softmax(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: NDArray[np.float32] = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


class SoftmaxClassifier:
    """A classifier whose model answers logits, made to answer probabilities."""

    def __init__(self, inner: Classifier) -> None:
        self._inner = inner

    @property
    def backend(self) -> str:
        return self._inner.backend

    @property
    def num_classes(self) -> int:
        return self._inner.num_classes

    def predict(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        return softmax(self._inner.predict(batch))


def with_probabilities(classifier: Classifier) -> Classifier:
    """`classifier` run once on `probe_batch` (its warm-up): itself when it answers
    probabilities, wrapped in a softmax when it answers logits; `ModelError` otherwise."""
    answers = []
    # One image per call: the batch size the model was exported with, whatever it is.
    for probe in probe_batch():
        answer = classifier.predict(probe[None])
        if answer.shape != (1, classifier.num_classes):
            expected = (1, classifier.num_classes)
            raise ModelError(f"warm-up returned shape {answer.shape}, expected {expected}")
        answers.append(answer)
    rows = np.concatenate(answers)
    form = output_form(rows)
    sums = rows.sum(axis=1, dtype=np.float64)
    log.info(
        "model_outputs",
        form=form,
        softmax_applied=form == "logits",
        row_sums=[round(float(sums.min()), 3), round(float(sums.max()), 3)],
    )
    return SoftmaxClassifier(classifier) if form == "logits" else classifier
