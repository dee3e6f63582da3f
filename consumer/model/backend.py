"""What an inference backend is: a plug-in that recognises a model among what was served and
loads it into a `Classifier`, the one small interface the pipeline calls."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


class Classifier(Protocol):
    """Maps a uint8 batch N x INPUT_SHAPE (RGB 0..255, `consumer.model_input`) to
    probabilities N x classes."""

    @property
    def backend(self) -> str: ...

    @property
    def num_classes(self) -> int: ...

    def predict(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]: ...


class Backend(Protocol):
    """One inference backend, registered in `consumer/model/backends/__init__.py`.

    Its module imports its framework only inside `preload` and `load`, so that a process
    using another backend never imports it (LiteRT never imports TensorFlow).
    """

    @property
    def name(self) -> str:
        """What its classifiers call themselves (`Classifier.backend`), e.g. "litert"."""
        ...

    @property
    def kind(self) -> str:
        """The model format it loads, recorded in the model cache, e.g. "tflite"."""
        ...

    @property
    def serves(self) -> str:
        """How that format is served, for error messages: "a TFLite flatbuffer"."""
        ...

    @property
    def archive_member(self) -> str | None:
        """The file that marks its model inside an unpacked archive, for error messages
        ("saved_model.pb"); None when it does not look inside archives."""
        ...

    @property
    def entry_name(self) -> str:
        """The model's name inside its cache entry (a file or a folder)."""
        ...

    def find(self, served: Path) -> Path | None:
        """The model this backend loads within `served` (the downloaded file, or the folder an
        archive was unpacked into), judged by content; None when it cannot load it."""
        ...

    def likely_at(self, url: str) -> bool:
        """A guess from the URL alone, used only to start `preload` while downloading."""
        ...

    def preload(self) -> None:
        """Import the framework ahead of need (it may take seconds)."""
        ...

    def load(self, path: Path, threads: int) -> Classifier:
        """The classifier of the model at `path`; raises `ModelError`."""
        ...


def top_k(probs: NDArray[np.float32], k: int) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
    """Indices and scores of the k best classes per row, best first (O(C) per row, no full sort)."""
    k = min(k, probs.shape[1])
    part = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    scores = np.take_along_axis(probs, part, axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(scores, order, axis=1)


def species_only(probs: NDArray[np.float32], background_id: int | None) -> NDArray[np.float32]:
    """`probs` with the "no bird" class out of the ranking (a copy; `probs` is untouched)."""
    if background_id is None:
        return probs
    ranked = probs.copy()
    ranked[:, background_id] = -np.inf
    return ranked
