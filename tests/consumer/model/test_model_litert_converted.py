"""LiteRT with other tensor types and shapes, converted here with TensorFlow: float and int8
inputs, models of another interface, outputs of the wrong rank, labels of another size."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from consumer.model import (
    Classifier,
    ModelArtifact,
    ModelError,
    check_labels,
    load_classifier,
)
from consumer.model.labels import parse_labels
from consumer.model_input import INPUT_SHAPE
from tests.conftest import TinyModels
from tests.consumer.model.tiny_checks import COLOURS, FLOAT_ATOL, artifact, solid


def _convert(
    tf: Any,
    fn: Callable[[Any], Any],
    input_shape: list[int],
    quantize: Any = None,
) -> bytes:
    module = tf.Module()
    function = tf.function(fn, input_signature=[tf.TensorSpec(input_shape, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], module
    )
    if quantize is not None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = quantize
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    data: bytes = converter.convert()
    return data


def _colour_kernel(classes: int) -> NDArray[np.float32]:
    """Logit weights: class 1 for red, 2 for green, 3 for blue (channel minus mean of channels)."""
    kernel = np.zeros((3, classes), np.float32)
    for channel in range(3):
        kernel[:, channel + 1] = -4.0
        kernel[channel, channel + 1] = 8.0
    return kernel


def _softmax_of_means(tf: Any, images: Any, kernel: NDArray[np.float32]) -> Any:
    return tf.nn.softmax(tf.matmul(tf.reduce_mean(images, axis=[1, 2]), kernel))


def _tflite(
    tf: Any,
    tmp_path: Path,
    name: str,
    fn: Callable[[Any], Any],
    input_shape: list[int] | None = None,
    quantize: Any = None,
) -> ModelArtifact:
    """`fn` converted to a LiteRT model in `tmp_path`/`name` (input [1, *INPUT_SHAPE] unless
    `input_shape` says otherwise)."""
    path = tmp_path / name
    path.write_bytes(_convert(tf, fn, input_shape or [1, *INPUT_SHAPE], quantize))
    return artifact(path, "tflite")


def _float_colour_classifier(tf: Any, tmp_path: Path, kernel: NDArray[np.float32]) -> Classifier:
    """A float LiteRT model answering softmax(channel means @ `kernel`), loaded."""
    model = _tflite(tf, tmp_path, "float.tflite", lambda x: _softmax_of_means(tf, x, kernel))
    return load_classifier(model, 1)


@pytest.mark.tf
def test_litert_float_model_gets_pixels_scaled_to_unit_range(tf: Any, tmp_path: Path) -> None:
    kernel = _colour_kernel(7)
    classifier = _float_colour_classifier(tf, tmp_path, kernel)
    batch = np.concatenate([solid(COLOURS[c]) for c in ("red", "green", "blue", "dull-red")])

    probs = classifier.predict(batch)

    means = batch.reshape(4, -1, 3).mean(axis=1) / 255.0
    logits = means @ kernel
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert classifier.num_classes == 7
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, expected, atol=FLOAT_ATOL)
    assert list(probs.argmax(axis=1)) == [1, 2, 3, 1]


@pytest.mark.tf
def test_litert_int8_model_gets_shifted_pixels_and_dequantized_output(
    tf: Any, tmp_path: Path
) -> None:
    kernel = _colour_kernel(7)

    def fn(x: Any) -> Any:  # inputs in [-1, 1) like the uint8 model's (p - 128) / 128
        return _softmax_of_means(tf, (x + 1.0) / 2.0, kernel)

    def representative() -> Iterator[list[NDArray[np.float32]]]:
        rng = np.random.default_rng(0)
        for rgb in [*COLOURS.values(), (255, 255, 0), (0, 255, 255)]:
            pixels = solid(rgb)
            pixels[0, 0, 0] = (0, 255, 0)
            yield [((pixels.astype(np.float32) - 128) / 128).astype(np.float32)]
        for _ in range(3):
            noise = rng.integers(0, 256, (1, *INPUT_SHAPE)).astype(np.float32)
            yield [((noise - 128) / 128).astype(np.float32)]

    model = _tflite(tf, tmp_path, "int8.tflite", fn, quantize=representative)
    classifier = load_classifier(model, 1)
    batch = np.concatenate([solid(COLOURS[c]) for c in ("red", "green", "blue", "grey")])

    probs = classifier.predict(batch)

    assert probs.dtype == np.float32
    assert probs.min() >= 0.0
    assert probs.max() <= 1.0
    assert list(probs[:3].argmax(axis=1)) == [1, 2, 3]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.05)


@pytest.mark.tf
@pytest.mark.parametrize(
    ("shape", "outputs", "reason"),
    [
        ([1, 128, 128, 3], 1, r"input shape \[1, 128, 128, 3\] is not \[N, 224, 224, 3\]"),
        ([1, *INPUT_SHAPE], 2, "expected 1 input and 1 output, got 1 and 2"),
    ],
    ids=["small-input", "two-outputs"],
)
def test_litert_refuses_models_of_another_interface(
    tf: Any, tmp_path: Path, shape: list[int], outputs: int, reason: str
) -> None:
    kernel = _colour_kernel(5)

    def fn(x: Any) -> Any:
        probs = _softmax_of_means(tf, x, kernel)
        return probs if outputs == 1 else (probs, tf.reduce_max(probs, axis=1))

    model = _tflite(tf, tmp_path, "other.tflite", fn, shape)

    with pytest.raises(ModelError, match=reason):
        load_classifier(model, 1)


@pytest.mark.tf
def test_warm_up_catches_outputs_of_the_wrong_rank(tf: Any, tmp_path: Path) -> None:
    kernel = _colour_kernel(5)
    model = _tflite(
        tf, tmp_path, "rank3.tflite", lambda x: _softmax_of_means(tf, x, kernel)[:, None, :]
    )

    with pytest.raises(ModelError, match=r"warm-up returned shape \(1, 1, 5\), expected \(1, 5\)"):
        load_classifier(model, 1)


@pytest.mark.tf
def test_check_labels_on_a_smaller_tflite(tf: Any, tmp_path: Path, tiny_models: TinyModels) -> None:
    classifier = _float_colour_classifier(tf, tmp_path, _colour_kernel(7))

    with pytest.raises(ModelError, match="965 labels but the model has 7 classes"):
        check_labels(classifier, parse_labels(tiny_models.labels_csv))
