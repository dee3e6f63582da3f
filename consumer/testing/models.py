"""Tiny stand-ins for the AIY birds classifier, generated on the fly for tests.

Every model has the real model's interface (N x INPUT_SHAPE RGB in, 965 probabilities out) and
computes the same cheap function of the per-channel mean colour, so tests can predict the top-1
label: mostly red, green or blue images map to :data:`RED_CLASS`, :data:`GREEN_CLASS`,
:data:`BLUE_CLASS`; achromatic ones (grey, black, white) map to :data:`GREY_CLASS`.
For a strong colour, the next two labels are the class's "siblings" (class + 1, class + 2);
for achromatic images they are 963 and 962.

TensorFlow is imported lazily inside the generators, so importing this module is cheap.
"""

from __future__ import annotations

import functools
import importlib.util
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from consumer.model_input import INPUT_SHAPE
from consumer.testing.archives import write_tar_gz

NUM_CLASSES = 965
RED_CLASS = 10
GREEN_CLASS = 20
BLUE_CLASS = 30
GREY_CLASS = 964

INPUT_NAME = "images"
TF2_SIGNATURE = "serving_default"
TF2_OUTPUT_KEY = "probabilities"
TF1_SIGNATURES = ("default", "image_classifier")
TF1_OUTPUT_KEY = "default"
TFLITE_INPUT_QUANTIZATION = (1 / 128, 128)
TFLITE_OUTPUT_QUANTIZATION = (1 / 256, 0)

TF_AVAILABLE: bool = importlib.util.find_spec("tensorflow") is not None
HUB_AVAILABLE: bool = TF_AVAILABLE and importlib.util.find_spec("tensorflow_hub") is not None

# Serialized ``tensorflow_hub.ModuleDef(format=FORMAT_V3)``: field 1 (varint) = 3.
_MODULE_DEF_V3 = b"\x08\x03"

_CONTRAST = 12.0  # logit gain on (channel - mean of channels)
_SIBLING_STEP = 0.5  # logit gap between a colour class and its siblings
_GREY_LOGITS = (2.0, 1.5, 1.0)  # classes 964, 963, 962 (constant)
_OTHER_LOGIT = -6.0  # every other class, minus a small per-class offset

FloatArray = npt.NDArray[np.float64]


@functools.cache
def _weights() -> FloatArray:
    """Return the (965, 4) matrix W with ``logits = W @ [r, g, b, 1]``, channels in [0, 1]."""
    w = np.zeros((NUM_CLASSES, 4))
    w[:, 3] = _OTHER_LOGIT - np.arange(NUM_CLASSES) / 1000
    for channel, base in enumerate((RED_CLASS, GREEN_CLASS, BLUE_CLASS)):
        contrast = np.full(3, -_CONTRAST / 3)
        contrast[channel] += _CONTRAST
        for sibling in range(3):
            w[base + sibling, :3] = contrast
            # The tiny per-channel offset breaks ties between equally strong colours.
            w[base + sibling, 3] = -0.01 * channel - _SIBLING_STEP * sibling
    for rank, logit in enumerate(_GREY_LOGITS):
        w[GREY_CLASS - rank, 3] = logit
    w.flags.writeable = False
    return w


def expected_probabilities(rgb_mean: tuple[float, float, float]) -> FloatArray:
    """Return the float models' output for an image with this mean colour (channels in [0, 1])."""
    logits = _weights() @ np.array([*rgb_mean, 1.0])
    exp = np.exp(logits - logits.max())
    return np.asarray(exp / exp.sum(), dtype=np.float64)


def expected_top1(rgb_mean: tuple[float, float, float]) -> int:
    """Return the class every generated model ranks first (away from decision boundaries)."""
    return int(np.argmax(_weights() @ np.array([*rgb_mean, 1.0])))


def make_labelmap_csv() -> bytes:
    """Return a label map shaped like the real one: background first, then species by id."""
    rows = ["id,name", f"{GREY_CLASS},background"]
    rows += [f"{i},Species {i}" for i in range(GREY_CLASS)]
    return ("\n".join(rows) + "\n").encode()


def _affine_weights(scale: float, offset: float) -> tuple[FloatArray, FloatArray]:
    """Return (kernel [3, 965], bias [965]) for inputs ``x`` where channel = scale * x + offset."""
    w = _weights()
    kernel = w[:, :3].T * scale
    bias = w[:, 3] + offset * w[:, :3].sum(axis=1)
    return kernel, bias


def _probabilities(tf: Any, images: Any, kernel: Any, bias: Any) -> Any:
    """Build the shared graph: channel means, one affine layer, softmax."""
    means = tf.reduce_mean(images, axis=[1, 2])
    return tf.nn.softmax(tf.matmul(means, kernel) + bias)


def _image_spec(tf: Any, batch: int | None) -> Any:
    """Return the float32 ``images`` input spec with the given batch dimension."""
    return tf.TensorSpec([batch, *INPUT_SHAPE], tf.float32, INPUT_NAME)


def _calibration_pixels() -> Iterator[npt.NDArray[np.uint8]]:
    """Yield uint8 images spanning solid colours and noise, each holding both 0 and 255."""
    size = (1, *INPUT_SHAPE)
    solid = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128), (0, 0, 0), (255, 255, 255)]
    solid += [(255, 255, 0), (0, 255, 255), (255, 0, 255), (200, 60, 60), (60, 60, 200)]
    rng = np.random.default_rng(0)
    images = [np.broadcast_to(np.array(c, np.uint8), size).copy() for c in solid]
    images += [rng.integers(0, 256, size, dtype=np.uint8) for _ in range(4)]
    for image in images:
        image[0, 0, 0] = 0
        image[0, 0, 1] = 255
        yield image


def make_tflite_model(path: Path) -> None:
    """Write a fully uint8-quantized ``.tflite`` model with the real model's tensors.

    Input uint8 [1, *INPUT_SHAPE] (scale 1/128, zero point 128, i.e. pixel p means
    (p - 128) / 128), output uint8 [1, 965] (scale 1/256, zero point 0); the batch dimension
    can be resized. Pixel p is treated as channel value p / 256.
    """
    import tensorflow as tf

    kernel, bias = _affine_weights(scale=0.5, offset=0.5)
    module = tf.Module()
    module.kernel = tf.constant(kernel, tf.float32)
    module.bias = tf.constant(bias, tf.float32)

    def classify(images: Any) -> Any:
        return _probabilities(tf, images, module.kernel, module.bias)

    # Fixed batch of 1 like the real model; the interpreter can still resize it.
    module.classify = tf.function(classify, input_signature=[_image_spec(tf, batch=1)])
    scale, zero_point = TFLITE_INPUT_QUANTIZATION

    def representative() -> Iterator[list[npt.NDArray[np.float32]]]:
        for pixels in _calibration_pixels():
            yield [((pixels.astype(np.float32) - zero_point) * scale).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.classify.get_concrete_function()], module
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    path.write_bytes(converter.convert())


def _save_tf2(tf: Any, export_dir: Path) -> None:
    """Save a TF2 SavedModel with a ``serving_default`` signature."""
    kernel, bias = _affine_weights(scale=1.0, offset=0.0)
    module = tf.Module()
    module.kernel = tf.Variable(kernel, dtype=tf.float32, trainable=False, name="kernel")
    module.bias = tf.Variable(bias, dtype=tf.float32, trainable=False, name="bias")

    def serve(images: Any) -> dict[str, Any]:
        return {TF2_OUTPUT_KEY: _probabilities(tf, images, module.kernel, module.bias)}

    module.serve = tf.function(serve, input_signature=[_image_spec(tf, batch=None)])
    tf.saved_model.save(module, str(export_dir), signatures={TF2_SIGNATURE: module.serve})


def _tensor_info(tensor: Any) -> Any:
    """Describe a graph tensor for a SignatureDef (without the deprecated v1 helper)."""
    from tensorflow.core.protobuf import meta_graph_pb2

    return meta_graph_pb2.TensorInfo(
        name=tensor.name,
        dtype=tensor.dtype.as_datatype_enum,
        tensor_shape=tensor.shape.as_proto(),
    )


def _save_tf1_hub(tf: Any, export_dir: Path) -> None:
    """Save a TF1 SavedModel (empty tag set) plus ``tfhub_module.pb``, like a TF1 Hub module."""
    from tensorflow.core.protobuf import meta_graph_pb2

    v1 = tf.compat.v1
    kernel, bias = _affine_weights(scale=1.0, offset=0.0)
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.float32, [None, *INPUT_SHAPE], INPUT_NAME)
        kernel_var = v1.get_variable("kernel", initializer=kernel.astype(np.float32))
        bias_var = v1.get_variable("bias", initializer=bias.astype(np.float32))
        probabilities = _probabilities(tf, images, kernel_var, bias_var)
        signature = meta_graph_pb2.SignatureDef(
            inputs={INPUT_NAME: _tensor_info(images)},
            outputs={TF1_OUTPUT_KEY: _tensor_info(probabilities)},
            method_name=tf.saved_model.PREDICT_METHOD_NAME,
        )
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(export_dir))
            builder.add_meta_graph_and_variables(
                session, tags=[], signature_def_map=dict.fromkeys(TF1_SIGNATURES, signature)
            )
            builder.save()
    (export_dir / "tfhub_module.pb").write_bytes(_MODULE_DEF_V3)


def make_savedmodel_archive(
    path: Path, flavor: Literal["tf2", "tf1_hub"], *, member_prefix: Literal["", "./"] = ""
) -> None:
    """Write a ``.tar.gz`` SavedModel like TF Hub's ``?tf-hub-format=compressed`` downloads.

    Input ``images`` float32 [None, *INPUT_SHAPE] in [0, 1]; output float32 [None, 965]
    probabilities. "tf2" exposes signature ``serving_default`` with output ``probabilities``;
    "tf1_hub" exposes signatures ``default`` and ``image_classifier`` with output ``default``
    under the empty tag set, and adds ``tfhub_module.pb``. Members sit at the archive root,
    optionally prefixed with "./" as ``tar -C dir .`` writes them.
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="tiny-savedmodel-") as tmp:
        export_dir = Path(tmp) / "model"
        if flavor == "tf2":
            _save_tf2(tf, export_dir)
        elif flavor == "tf1_hub":
            _save_tf1_hub(tf, export_dir)
        else:
            raise ValueError(f"unknown flavor: {flavor!r}")
        write_tar_gz(export_dir, path, member_prefix)
