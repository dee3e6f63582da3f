"""The inference backends behind `load_classifier`, `check_labels` and `top_k`."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from numpy.typing import NDArray

from consumer.model import (
    Classifier,
    ModelArtifact,
    ModelError,
    ModelFetcher,
    check_labels,
    load_classifier,
    top_k,
)
from consumer.model.labels import parse_labels
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
from tests.conftest import LoopbackServer, TinyModels

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


@pytest.fixture
def tf() -> Any:
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def litert(tiny_models: TinyModels) -> Classifier:
    return load_classifier(artifact(tiny_models.tflite, "tflite"), 2)


# --- LiteRT -----------------------------------------------------------------------------------


def test_litert_interface(litert: Classifier) -> None:
    assert litert.backend == "litert"
    assert litert.num_classes == NUM_CLASSES


def test_litert_resizes_between_batch_sizes_and_dequantizes(litert: Classifier) -> None:
    palette = [solid(rgb) for rgb in COLOURS.values()]
    for n in (1, 3, 1, 7, 2):
        batch = np.concatenate([palette[i % len(palette)] for i in range(n)])
        probs = assert_matches_tiny_model(litert, batch, TFLITE_DIVISOR, TFLITE_ATOL)
        # Dequantized with the output scale 1/256: steps of 1/256, never raw 0..255 codes.
        steps = probs * 256
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-4)
        assert 0.9 < probs.sum(axis=1).min() <= probs.sum(axis=1).max() < 1.01


@pytest.mark.parametrize("colour", list(COLOURS))
def test_litert_top3_per_colour(litert: Classifier, colour: str) -> None:
    ids, scores = top_k(litert.predict(solid(COLOURS[colour])), 3)

    assert list(ids[0]) == EXPECTED_TOP3[colour]
    assert list(scores[0]) == sorted(scores[0], reverse=True)


@pytest.mark.parametrize(("channel", "label"), [(0, RED_CLASS), (1, GREEN_CLASS), (2, BLUE_CLASS)])
def test_litert_noisy_mostly_one_colour_images(
    litert: Classifier, channel: int, label: int
) -> None:
    batch = np.concatenate([mostly(channel, seed) for seed in range(3)])
    probs = assert_matches_tiny_model(litert, batch, TFLITE_DIVISOR, TFLITE_ATOL)
    assert list(probs.argmax(axis=1)) == [label] * 3


def test_litert_rows_do_not_depend_on_the_batch(litert: Classifier) -> None:
    batch = np.concatenate([mostly(0, 1), solid(COLOURS["blue"]), mostly(1, 2), mostly(2, 3)])
    together = litert.predict(batch)
    alone = np.concatenate([litert.predict(batch[i : i + 1]) for i in range(len(batch))])
    np.testing.assert_array_equal(together, alone)


def test_litert_is_safe_to_call_from_several_threads(litert: Classifier) -> None:
    names = list(COLOURS)

    def job(i: int) -> tuple[list[int], list[int]]:
        n = 1 + i % 4
        chosen = [names[(i + j) % len(names)] for j in range(n)]
        probs = litert.predict(np.concatenate([solid(COLOURS[c]) for c in chosen]))
        return list(probs.argmax(axis=1)), [EXPECTED_TOP3[c][0] for c in chosen]

    with ThreadPoolExecutor(4) as pool:
        for got, want in pool.map(job, range(24)):
            assert got == want


def test_litert_refuses_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    bogus = tmp_path / "model.tflite"
    bogus.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 4)

    with pytest.raises(ModelError, match="cannot load TFLite model"):
        load_classifier(artifact(bogus, "tflite"), 1)


_LOAD_WITHOUT_TENSORFLOW = """
import asyncio, json, sys
from pathlib import Path

import aiohttp
import numpy as np
from consumer.model import ModelFetcher, load_classifier, top_k
from consumer.model_input import INPUT_SHAPE


async def fetch():
    async with aiohttp.ClientSession() as session:
        return await ModelFetcher(session, Path(sys.argv[1])).fetch_model(sys.argv[2])


artifact = asyncio.run(fetch())
classifier = load_classifier(artifact, 1)
red = np.zeros((2, *INPUT_SHAPE), np.uint8)
red[..., 0] = 255
ids, _ = top_k(classifier.predict(red), 1)
heavy = ("tensorflow", "tensorflow_hub", "keras", "tf_keras")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy)
print(json.dumps({"backend": classifier.backend, "top1": ids[:, 0].tolist(), "loaded": loaded}))
assert "tensorflow" not in sys.modules, loaded
"""


async def test_litert_path_never_imports_tensorflow(
    http_server: LoopbackServer, tiny_models: TinyModels, tmp_path: Path
) -> None:
    url = http_server.add_bytes("/birds.tflite", tiny_models.tflite.read_bytes())

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _LOAD_WITHOUT_TENSORFLOW,
        str(tmp_path / "cache"),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)

    assert proc.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report == {"backend": "litert", "top1": [RED_CLASS, RED_CLASS], "loaded": []}
    assert http_server.hits["/birds.tflite"] == 1


# --- LiteRT with other tensor types and shapes (converted here with TensorFlow) ----------------


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


# --- TensorFlow -------------------------------------------------------------------------------


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
            tf, lambda images: {"a": probs(images), "b": probs(images) * 2}, _images(tf)
        )
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
def test_tensorflow_backend_refuses_a_broken_savedmodel(tmp_path: Path) -> None:
    folder = tmp_path / "saved_model"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"this is not a protocol buffer")

    with pytest.raises(ModelError, match="cannot load SavedModel"):
        load_classifier(artifact(folder, "savedmodel"), 1)


# --- labels against the model -------------------------------------------------------------------


def test_check_labels(litert: Classifier, tiny_models: TinyModels) -> None:
    labels = parse_labels(tiny_models.labels_csv)
    check_labels(litert, labels)  # 965 and 965

    with pytest.raises(ModelError, match="964 labels but the model has 965 classes") as caught:
        check_labels(litert, labels[:-1])
    assert caught.value.retryable is False
    with pytest.raises(ModelError, match="966 labels"):
        check_labels(litert, [*labels, "extra"])


@pytest.mark.tf
def test_check_labels_on_a_smaller_tflite(tf: Any, tmp_path: Path, tiny_models: TinyModels) -> None:
    classifier = _float_colour_classifier(tf, tmp_path, _colour_kernel(7))

    with pytest.raises(ModelError, match="965 labels but the model has 7 classes"):
        check_labels(classifier, parse_labels(tiny_models.labels_csv))


# --- top_k ------------------------------------------------------------------------------------


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
