"""LiteRT (ai-edge-litert) backend for TF Hub's TFLite format of the model.

It recognises a TFLite flatbuffer by its file identifier, "TFL3" at byte 4: served as it is,
or as the one flatbuffer of an archive (Kaggle serves its TFLite variations as a tar.gz holding
the `.tflite`). `ai_edge_litert` is imported when a model is loaded, never by importing this
module.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from yarl import URL

from consumer.model.backend import Classifier
from consumer.model.errors import ModelError
from consumer.model_input import INPUT_SHAPE

_IDENTIFIER = b"TFL3"


class LiteRTBackend:
    """Loads `.tflite` flatbuffers with LiteRT (see `consumer.model.backend.Backend`)."""

    name = "litert"
    kind = "tflite"
    serves = "a TFLite flatbuffer"
    archive_member = ".tflite file"
    entry_name = "model.tflite"

    def find(self, served: Path) -> Path | None:
        if served.is_file():
            return served if _holds_flatbuffer(served) else None
        if not served.is_dir():
            return None
        found = sorted(p for p in served.rglob("*") if p.is_file() and _holds_flatbuffer(p))
        if len(found) > 1:
            names = ", ".join(p.relative_to(served).as_posix() for p in found)
            raise ModelError(f"the archive holds {len(found)} TFLite models ({names}); give one")
        return found[0] if found else None

    def likely_at(self, url: str) -> bool:
        return likely_tflite(url)

    def preload(self) -> None:
        try:
            import ai_edge_litert.interpreter  # noqa: F401
        except ImportError:  # pragma: no cover - the lite extra is not installed
            return

    def load(self, path: Path, threads: int) -> Classifier:
        return LiteRTClassifier(path, threads)


def _holds_flatbuffer(path: Path) -> bool:
    if path.is_symlink():
        return False
    with path.open("rb") as f:
        return is_flatbuffer(f.read(8))


def is_flatbuffer(head: bytes) -> bool:
    """Whether these first bytes are those of a TFLite flatbuffer."""
    return head[4:8] == _IDENTIFIER


def likely_tflite(handle: str) -> bool:
    """A guess from the URL alone, used only to start importing a framework early: TF Hub's
    lite-model handles, `.tflite` files, and Kaggle's tfLite framework (handle, page or
    download URL)."""
    if "://" not in handle:  # a Kaggle handle: owner/model/framework/variation/version
        parts = handle.split("/")
        return len(parts) > 2 and parts[2].lower() == "tflite"
    url = URL(handle)
    path = url.path
    return (
        path.endswith(".tflite")
        or "/lite-model/" in path
        or "lite-format" in url.query
        or "/tflite/" in path.lower()
    )


class LiteRTClassifier:
    """Runs a .tflite classifier; feeds uint8 where the model wants uint8, dequantizes output."""

    backend = "litert"

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interp = Interpreter(model_path=str(path), num_threads=threads)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load TFLite model {path}: {exc}") from None
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"expected 1 input and 1 output, got {len(inputs)} and {len(outputs)}")
        self._in: dict[str, Any] = inputs[0]
        self._out: dict[str, Any] = outputs[0]
        if tuple(int(d) for d in self._in["shape"][1:]) != INPUT_SHAPE:
            shape = self._in["shape"].tolist()  # plain ints, not np.int32(...) in the message
            wanted = ", ".join(map(str, INPUT_SHAPE))
            raise ModelError(f"model input shape {shape} is not [N, {wanted}]")
        self._num_classes = int(self._out["shape"][-1])
        self._batch = int(self._in["shape"][0])
        self._interp.allocate_tensors()
        # An interpreter is not thread-safe; its own threads (XNNPACK) parallelise each call.
        self._lock = threading.Lock()

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def predict(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        with self._lock:
            n = batch.shape[0]
            if n != self._batch:
                self._interp.resize_tensor_input(self._in["index"], [n, *INPUT_SHAPE])
                self._interp.allocate_tensors()
                self._batch = n
            self._interp.set_tensor(self._in["index"], self._to_input(batch))
            self._interp.invoke()
            raw = self._interp.get_tensor(self._out["index"])
        return self._dequantize(raw)

    def _to_input(self, batch: NDArray[np.uint8]) -> NDArray[Any]:
        dtype = self._in["dtype"]
        if dtype == np.uint8:
            return batch
        if dtype == np.int8:
            return (batch.astype(np.int16) - 128).astype(np.int8)
        return (batch.astype(np.float32) / 255.0).astype(dtype)

    def _dequantize(self, raw: NDArray[Any]) -> NDArray[np.float32]:
        scale, zero_point = self._out.get("quantization", (0.0, 0))
        probs: NDArray[np.float32]
        if raw.dtype in (np.uint8, np.int8) and scale:
            probs = ((raw.astype(np.float32) - zero_point) * scale).astype(np.float32)
        else:
            probs = raw.astype(np.float32, copy=False)
        return probs
