"""TensorFlow backend for SavedModels: TF1 Hub format (`default`/`image_classifier`) and TF2.

It recognises a SavedModel folder (`saved_model.pb` or `.pbtxt`, at the top of an unpacked
archive or one folder down). TensorFlow is imported by `preload` and `load` only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray

from consumer.model.backend import Classifier
from consumer.model.errors import ModelError
from consumer.model.outputs import output_form
from consumer.model_input import INPUT_SHAPE
from consumer.native_logs import quiet_native_stderr

log = structlog.get_logger(__name__)

_GRAPH_FILES = ("saved_model.pb", "saved_model.pbtxt")
_BATCH_SHAPE = [None, *INPUT_SHAPE]


class TensorFlowBackend:
    """Loads SavedModels with TensorFlow (see `consumer.model.backend.Backend`)."""

    name = "tensorflow"
    kind = "savedmodel"
    serves = "a SavedModel archive"
    archive_member = "saved_model.pb"
    entry_name = "saved_model"

    def find(self, served: Path) -> Path | None:
        if not served.is_dir():
            return None
        for candidate in (served, *sorted(p for p in served.iterdir() if p.is_dir())):
            if any((candidate / name).exists() for name in _GRAPH_FILES):
                return candidate
        return None

    def likely_at(self, url: str) -> bool:
        # Any URL: TF Hub handles and archives carry no sure sign, so the backends asked
        # before this one claim theirs first and every other model is taken for a SavedModel.
        return True

    def preload(self) -> None:
        preload_tensorflow()

    def load(self, path: Path, threads: int) -> Classifier:
        return TensorFlowClassifier(path, threads)


# Preferred signatures: the TF1 Hub image-classifier ones, then the TF2 default.
_SIGNATURES = ("image_classifier", "default", "serving_default")
_OUTPUT_KEYS = ("default", "probabilities", "predictions", "output_0")


class TensorFlowClassifier:
    """Calls the model's signature inside one `tf.function` (no `model.predict` loop)."""

    backend = "tensorflow"

    def __init__(self, path: Path, threads: int) -> None:
        import tensorflow as tf
        import tensorflow_hub as hub

        _drop_absl_handler()
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
        except RuntimeError:
            log.debug("tf_threads_already_set")  # the runtime was initialised earlier
        try:
            self._module = hub.load(str(path))
        except Exception as exc:  # TF raises many unrelated types for a bad SavedModel
            raise ModelError(
                f"cannot load SavedModel {path}: {type(exc).__name__}: {exc}"
            ) from None
        name, signature = _pick_signature(self._module)
        input_name = _single_input(signature)
        spec = signature.structured_input_signature[1][input_name]
        if spec.dtype != tf.float32 or not spec.shape.is_compatible_with(_BATCH_SHAPE):
            # Otherwise the warm-up fails later with a TensorFlow traceback, not a ModelError.
            wanted = ", ".join(map(str, INPUT_SHAPE))
            raise ModelError(f"signature {name!r} takes {spec}, not float32 [N, {wanted}]")
        probe = signature(**{input_name: tf.zeros([1, *INPUT_SHAPE], tf.float32)})
        output_key = _pick_output(probe)
        self._num_classes = int(probe[output_key].shape[-1])
        log.debug("tf_signature", signature=name, input=input_name, output=output_key)

        # No Python control flow to convert: without AutoGraph, tracing skips converting (and
        # parsing) this function's source.
        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[tf.TensorSpec(_BATCH_SHAPE, tf.uint8)], autograph=False
        )
        def run(images: Any) -> Any:
            scaled = tf.cast(images, tf.float32) / 255.0  # the model wants RGB in [0, 1]
            return signature(**{input_name: scaled})[output_key]

        self._run = run

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def predict(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        out: NDArray[np.float32] = self._run(batch).numpy().astype(np.float32, copy=False)
        return out


def preload_tensorflow() -> None:
    """Import TensorFlow ahead of need; it costs seconds, so it overlaps the download."""
    try:
        with quiet_native_stderr():
            import tensorflow  # noqa: F401
            import tensorflow_hub  # noqa: F401
    except ImportError:  # pragma: no cover - the tf extra is not installed
        return
    _drop_absl_handler()


def _pick_signature(module: Any) -> tuple[str, Any]:
    signatures = getattr(module, "signatures", {})
    for name in _SIGNATURES:
        if name in signatures:
            return name, signatures[name]
    raise ModelError(f"SavedModel has none of the signatures {_SIGNATURES}: {sorted(signatures)}")


def _single_input(signature: Any) -> str:
    _, kwargs = signature.structured_input_signature
    if len(kwargs) != 1:
        raise ModelError(f"expected one image input, got {sorted(kwargs)}")
    return str(next(iter(kwargs)))


def _pick_output(outputs: dict[str, Any]) -> str:
    """The output holding the probabilities, judged by its values on the probe: the first
    distribution (preferred names first: TF1 Hub modules also expose `logits`); without one,
    a lone output or a preferred name, whose logits the warm-up check turns into
    probabilities."""
    ranked = sorted(outputs, key=lambda k: (_OUTPUT_KEYS.index(k) if k in _OUTPUT_KEYS else 99, k))
    for key in ranked:
        if _is_distribution(outputs[key].numpy()):
            return key
    if len(outputs) == 1:
        return next(iter(outputs))
    for key in _OUTPUT_KEYS:
        if key in outputs:
            return key
    raise ModelError(f"cannot tell which output holds the probabilities: {sorted(outputs)}")


def _is_distribution(rows: Any) -> bool:
    if getattr(rows, "ndim", 0) != 2:
        return False
    try:
        return output_form(rows.astype(np.float32)) == "probabilities"
    except ModelError:
        return False


def _drop_absl_handler() -> None:
    # absl adds its own handler to the root logger on import; ours already formats everything.
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if type(h).__name__ != "ABSLHandler"]
