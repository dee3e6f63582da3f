"""The TensorFlow backend (consumer/model/backends/tensorflow.py) on both SavedModel flavours
of the tiny model, and the SavedModels it refuses with a reason."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from structlog.testing import capture_logs

from consumer.model import (
    ModelArtifact,
    ModelError,
    ModelFetcher,
    load_classifier,
    top_k,
)
from consumer.model_input import INPUT_SHAPE
from consumer.testing.models import (
    BLUE_CLASS,
    GREEN_CLASS,
    GREY_CLASS,
    NUM_CLASSES,
    RED_CLASS,
)
from tests.conftest import LoopbackServer, TinyModels
from tests.consumer.model.tiny_checks import (
    COLOURS,
    EXPECTED_TOP3,
    FLOAT_ATOL,
    TF_DIVISOR,
    artifact,
    assert_matches_tiny_model,
    mostly,
    solid,
)


@pytest.fixture
async def fetch_from_loopback(
    http_server: LoopbackServer, tmp_path: Path
) -> AsyncIterator[Callable[[Path], Any]]:
    async with aiohttp.ClientSession() as session:
        fetcher = ModelFetcher(session, tmp_path / "cache")

        async def fetch(archive: Path) -> ModelArtifact:
            url = http_server.add_bytes(f"/{archive.name}", archive.read_bytes())
            return await fetcher.fetch_model(url)

        yield fetch


@pytest.mark.tf
@pytest.mark.parametrize("flavor", ["tf2", "tf1_hub"])
async def test_tensorflow_backend_on_both_savedmodel_flavours(
    tiny_models: TinyModels,
    fetch_from_loopback: Callable[[Path], Any],
    flavor: str,
) -> None:
    archive = tiny_models.tf2_archive if flavor == "tf2" else tiny_models.tf1_hub_archive
    fetched: ModelArtifact = await fetch_from_loopback(archive)
    assert fetched.kind == "savedmodel"

    classifier = await asyncio.to_thread(load_classifier, fetched, 1)

    assert classifier.backend == "tensorflow"
    assert classifier.num_classes == NUM_CLASSES
    one = assert_matches_tiny_model(classifier, mostly(0, 7), TF_DIVISOR, FLOAT_ATOL)
    assert one.argmax() == RED_CLASS
    four = np.concatenate([solid(COLOURS[c]) for c in ("red", "green", "blue", "grey")])
    probs = assert_matches_tiny_model(classifier, four, TF_DIVISOR, FLOAT_ATOL)
    assert list(probs.argmax(axis=1)) == [RED_CLASS, GREEN_CLASS, BLUE_CLASS, GREY_CLASS]
    ids, _ = top_k(probs, 3)
    assert [list(row) for row in ids] == [
        EXPECTED_TOP3[c] for c in ("red", "green", "blue", "grey")
    ]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def _tf_function(tf: Any, fn: Callable[..., Any], *specs: Any) -> Any:
    return tf.function(fn, input_signature=list(specs))


def _images(
    tf: Any, shape: tuple[int | None, ...] = (None, *INPUT_SHAPE), dtype: Any = None
) -> Any:
    return tf.TensorSpec(list(shape), dtype or tf.float32, "images")


def _build_savedmodel(tf: Any, export_dir: Path, variant: str) -> None:
    module = tf.Module()
    module.weights = tf.Variable(np.ones((3, 5), np.float32))

    def logits(images: Any) -> Any:
        # Channel means weighted by class: scores from -1 to 3, so never probabilities.
        means = tf.reduce_mean(images, axis=[1, 2])
        return tf.matmul(means, module.weights) * tf.range(5, dtype=tf.float32) - 1.0

    def probs(images: Any) -> Any:
        return tf.nn.softmax(tf.matmul(tf.reduce_mean(images, axis=[1, 2]), module.weights))

    signatures: dict[str, Any] | None
    if variant == "no-signatures":
        signatures = None  # a bare module: no tf.function at all
    elif variant == "unknown-signature-name":
        module.f = _tf_function(tf, lambda images: {"probabilities": probs(images)}, _images(tf))
        signatures = {"classify": module.f}
    elif variant == "two-inputs":
        module.f = _tf_function(
            tf,
            lambda images, scale: {"probabilities": probs(images * scale)},
            _images(tf),
            tf.TensorSpec([], tf.float32, "scale"),
        )
        signatures = {"serving_default": module.f}
    elif variant == "two-unknown-outputs":
        module.f = _tf_function(
            tf, lambda images: {"a": logits(images), "b": logits(images) * 2}, _images(tf)
        )
        signatures = {"serving_default": module.f}
    elif variant == "misleading-names":
        # "default" is preferred by name, but holds logits; the probabilities are elsewhere.
        module.f = _tf_function(
            tf,
            lambda images: {"default": logits(images), "scores": probs(images)},
            _images(tf),
        )
        signatures = {"serving_default": module.f}
    elif variant == "logits-only":
        module.f = _tf_function(tf, lambda images: {"logits": logits(images)}, _images(tf))
        signatures = {"serving_default": module.f}
    elif variant == "wrong-size":
        module.f = _tf_function(
            tf, lambda images: {"probabilities": probs(images)}, _images(tf, (None, 299, 299, 3))
        )
        signatures = {"serving_default": module.f}
    elif variant == "uint8-input":
        module.f = _tf_function(
            tf,
            lambda images: {"probabilities": probs(tf.cast(images, tf.float32))},
            _images(tf, dtype=tf.uint8),
        )
        signatures = {"serving_default": module.f}
    elif variant == "flat-output":
        module.f = _tf_function(tf, lambda images: {"default": probs(images)[0]}, _images(tf))
        signatures = {"default": module.f}
    elif variant == "one-oddly-named-output":
        module.f = _tf_function(tf, lambda images: {"scores": probs(images)}, _images(tf))
        signatures = {"serving_default": module.f}
    else:  # pragma: no cover - a typo in the parametrization
        raise AssertionError(variant)
    tf.saved_model.save(module, str(export_dir), signatures=signatures)


@pytest.mark.tf
@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ("no-signatures", r"none of the signatures .*: \[\]"),
        ("unknown-signature-name", r"none of the signatures .*: \['classify'\]"),
        ("two-inputs", r"expected one image input, got \['images', 'scale'\]"),
        ("two-unknown-outputs", r"which output holds the probabilities: \['a', 'b'\]"),
        ("wrong-size", r"takes TensorSpec\(shape=\(None, 299, 299, 3\).*not float32"),
        ("uint8-input", r"takes TensorSpec\(.*dtype=tf.uint8.*not float32"),
        ("flat-output", r"warm-up returned shape \(5,\), expected \(1, 5\)"),
    ],
)
def test_tensorflow_backend_refuses_unexpected_savedmodels(
    tf: Any, tmp_path: Path, variant: str, reason: str
) -> None:
    export_dir = tmp_path / "saved_model"
    _build_savedmodel(tf, export_dir, variant)

    with pytest.raises(ModelError, match=reason):
        load_classifier(artifact(export_dir, "savedmodel"), 1)


@pytest.mark.tf
def test_tensorflow_backend_takes_a_lone_output_whatever_its_name(tf: Any, tmp_path: Path) -> None:
    export_dir = tmp_path / "saved_model"
    _build_savedmodel(tf, export_dir, "one-oddly-named-output")

    classifier = load_classifier(artifact(export_dir, "savedmodel"), 1)

    assert classifier.num_classes == 5
    probs = classifier.predict(solid(COLOURS["red"], 2))
    np.testing.assert_allclose(probs, np.full((2, 5), 0.2), atol=1e-6)


@pytest.mark.tf
@pytest.mark.parametrize("variant", ["misleading-names", "logits-only"])
def test_tensorflow_outputs_are_judged_by_their_values_not_their_names(
    tf: Any, tmp_path: Path, variant: str
) -> None:
    export_dir = tmp_path / "saved_model"
    _build_savedmodel(tf, export_dir, variant)

    with capture_logs() as logs:
        classifier = load_classifier(artifact(export_dir, "savedmodel"), 1)

    white = classifier.predict(solid(COLOURS["white"], 2))
    np.testing.assert_allclose(white.sum(axis=1), 1.0, atol=1e-5)
    assert white.min() >= 0
    if variant == "misleading-names":  # the softmax of equal logits: uniform
        np.testing.assert_allclose(white, np.full((2, 5), 0.2), atol=1e-6)
    else:  # the softmax of logits rising with the class id
        assert list(np.argsort(white[0])) == [0, 1, 2, 3, 4]
    forms = [e["form"] for e in logs if e["event"] == "model_outputs"]
    assert forms == (["probabilities"] if variant == "misleading-names" else ["logits"])


@pytest.mark.tf
def test_tensorflow_backend_refuses_a_broken_savedmodel(tmp_path: Path) -> None:
    folder = tmp_path / "saved_model"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"this is not a protocol buffer")

    with pytest.raises(ModelError, match="cannot load SavedModel"):
        load_classifier(artifact(folder, "savedmodel"), 1)
