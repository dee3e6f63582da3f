"""Fakes at the pipeline's boundaries: the image fetcher, the decoder and the classifier.

An image body names its class (`image_body(3)` is b"cls3"), `decode_marker` writes the class
into the first pixel, and `FakeClassifier` puts most of the probability on that class, so a
test knows each image's top 3 without a real model or real pictures.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from consumer.images.errors import ImageError
from consumer.model import LoadedModel
from consumer.model_input import INPUT_SHAPE
from consumer.testing.clock import FakeClock
from schemas import ErrorCode

CLASSES = 6
LABELS = [f"bird-{i}" for i in range(CLASSES)]


def image_body(cls: int) -> bytes:
    """The bytes a fake image of class `cls` is made of."""
    return f"cls{cls}".encode()


def decode_marker(data: bytes) -> NDArray[np.uint8]:
    """A decoder for `image_body`: the class goes into the first pixel (0 when none named)."""
    text = data.decode(errors="replace")
    cls = int(text[text.index("cls") + 3]) if "cls" in text else 0
    image = np.zeros(INPUT_SHAPE, dtype=np.uint8)
    image[0, 0, 0] = cls
    return image


@dataclass
class FakeOpenedImage:
    """What `FakeDecoder.open` returns: a body naming `costN` costs N bytes to decode (1 when it
    names none), so decode-budget tests choose each image's cost."""

    data: bytes
    decode_fn: Callable[[bytes], NDArray[np.uint8]]

    @property
    def cost_bytes(self) -> int:
        text = self.data.decode(errors="replace")
        return int(text.split("cost")[1].split("-")[0]) if "cost" in text else 1

    def decode(self) -> NDArray[np.uint8]:
        return self.decode_fn(self.data)


@dataclass
class FakeDecoder:
    """The pipeline's decoder over `decode_fn` (`decode_marker` by default)."""

    decode_fn: Callable[[bytes], NDArray[np.uint8]] = decode_marker

    def open(self, data: bytes) -> FakeOpenedImage:
        return FakeOpenedImage(data, self.decode_fn)


@dataclass
class FakeClassifier:
    """Ranks the first pixel's class first, then the next two; records its batches."""

    backend: str = "fake"
    num_classes: int = CLASSES
    batch_sizes: list[int] = field(default_factory=list)
    fail: bool = False
    threads: set[str] = field(default_factory=set)

    def predict(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        self.threads.add(threading.current_thread().name)
        self.batch_sizes.append(batch.shape[0])
        if self.fail:
            raise RuntimeError("backend exploded")
        n = self.num_classes
        probs = np.full((batch.shape[0], n), 0.01, dtype=np.float32)
        for row, image in enumerate(batch):
            cls = int(image[0, 0, 0]) % n
            probs[row, cls] = 0.9
            probs[row, (cls + 1) % n] = 0.05
            probs[row, (cls + 2) % n] = 0.03
        return probs


def fake_model(
    classifier: FakeClassifier | None = None,
    name: str = "fake-model",
    background_id: int | None = None,
) -> LoadedModel:
    """A loaded model around `classifier` (a new `FakeClassifier` by default); with
    `background_id`, that class is the label map's "no bird" class."""
    clf = classifier or FakeClassifier()
    labels = LABELS if clf.num_classes == CLASSES else [f"bird-{i}" for i in range(clf.num_classes)]
    if background_id is not None:
        labels = [*labels[:background_id], "background", *labels[background_id + 1 :]]
    return LoadedModel(name, clf, labels, 0.0, 0.0, 0, True, background_id=background_id)


class FakeFetcher:
    """Serves bodies by URL. URLs it was not told about answer by their last path segment:
    `fail-CODE` raises `ImageError(CODE)`, `crash` a RuntimeError, anything else is served as
    its own name (so `.../cls3` is an image of class 3). Each fetch can be delayed on `clock`
    (virtual time) or held until `release`d."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.calls: list[str] = []
        self._bodies: dict[str, bytes | Exception] = {}
        self._delays: dict[str, float] = {}
        self._gates: dict[str, asyncio.Event] = {}
        self.active = 0  # fetches under way
        self.peak_active = 0

    def serve(self, url: str, body: bytes | Exception, delay_s: float = 0.0) -> str:
        self._bodies[url] = body
        if delay_s:
            self._delays[url] = delay_s
        return url

    def serve_many(self, bodies: Mapping[str, bytes | Exception]) -> None:
        self._bodies.update(bodies)

    def hold(self, url: str) -> None:
        """Fetches of `url` wait until `release(url)`."""
        self._gates.setdefault(url, asyncio.Event())

    def release(self, url: str | None = None) -> None:
        """Let the held fetches of `url` (of every URL when None) finish."""
        for held, gate in list(self._gates.items()):
            if url is None or held == url:
                gate.set()
                del self._gates[held]

    async def fetch(self, url: str) -> bytes:
        self.calls.append(url)
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            gate = self._gates.get(url)
            if gate is not None:
                await gate.wait()
            delay = self._delays.get(url, 0.0)
            if delay:
                await (self.clock.sleep(delay) if self.clock else asyncio.sleep(delay))
            body = self._bodies[url] if url in self._bodies else _by_name(url)
        finally:
            self.active -= 1
        if isinstance(body, Exception):
            raise body
        return body


def _by_name(url: str) -> bytes | Exception:
    name = url.rsplit("/", 1)[-1]
    if name.startswith("fail-"):
        return ImageError(ErrorCode(name.removeprefix("fail-")), f"fake failure {name}")
    if name.startswith("crash"):
        return RuntimeError("unexpected bug")
    return name.encode()
