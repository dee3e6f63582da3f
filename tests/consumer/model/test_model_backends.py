"""What every backend's classifier is held to: labels that match its classes (`check_labels`),
and `top_k` over its probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.model import (
    Classifier,
    ModelError,
    check_labels,
    top_k,
)
from consumer.model.labels import parse_labels
from consumer.testing.models import (
    NUM_CLASSES,
)
from tests.conftest import TinyModels


def test_check_labels(litert: Classifier, tiny_models: TinyModels) -> None:
    labels = parse_labels(tiny_models.labels_csv)
    check_labels(litert, labels)  # 965 and 965

    with pytest.raises(ModelError, match="964 labels but the model has 965 classes") as caught:
        check_labels(litert, labels[:-1])
    assert caught.value.retryable is False
    with pytest.raises(ModelError, match="966 labels"):
        check_labels(litert, [*labels, "extra"])


@pytest.mark.parametrize("k", [1, 3, 10, 964, 965])
def test_top_k_matches_a_full_sort(k: int) -> None:
    rng = np.random.default_rng(k)
    # Distinct scores in every row (ties excluded), shuffled, with some noise on top.
    ranks = rng.permuted(np.tile(np.arange(NUM_CLASSES), (16, 1)), axis=1)
    probs = ((ranks + rng.uniform(0.0, 0.5, ranks.shape)) / NUM_CLASSES).astype(np.float32)
    assert all(len(np.unique(row)) == NUM_CLASSES for row in probs)

    ids, scores = top_k(probs, k)

    order = np.argsort(-probs, axis=1)[:, :k]
    assert ids.shape == scores.shape == (16, k)
    np.testing.assert_array_equal(ids, order)
    np.testing.assert_array_equal(scores, np.take_along_axis(probs, order, axis=1))
    assert (np.diff(scores, axis=1) < 0).all()  # strictly best first
    assert scores.dtype == np.float32


def test_top_k_larger_than_the_classes_returns_them_all_in_order() -> None:
    probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]], np.float32)

    ids, scores = top_k(probs, 10)

    np.testing.assert_array_equal(ids, [[1, 2, 0], [0, 2, 1]])
    np.testing.assert_array_equal(scores, np.array([[0.6, 0.3, 0.1], [0.5, 0.3, 0.2]], np.float32))


def test_top_k_of_a_single_row() -> None:
    probs = np.zeros((1, NUM_CLASSES), np.float32)
    probs[0, [5, 900, 42]] = [0.2, 0.5, 0.3]

    ids, scores = top_k(probs, 3)

    assert ids.tolist() == [[900, 42, 5]]
    np.testing.assert_allclose(scores, [[0.5, 0.3, 0.2]])
