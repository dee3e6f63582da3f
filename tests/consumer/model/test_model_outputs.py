"""What a model answers is found at warm-up (consumer/model/outputs.py): probabilities are
used as they are, logits get a softmax (logged), anything else is refused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from numpy.typing import NDArray
from structlog.testing import capture_logs

from consumer.model import BUILTIN_BACKENDS, Classifier, ModelError, ModelFetcher, load_model
from consumer.model.outputs import SoftmaxClassifier, output_form, softmax, with_probabilities
from tests.conftest import LoopbackServer

MAGIC = b"SCORES\n"
CLASSES = 5


class ScoresClassifier:
    """Answers fixed-shape scores computed from the first pixel: "logits", "probabilities",
    "independent" (sigmoid-like, rows summing to 2.5) or "nan"."""

    backend = "scores"
    num_classes = CLASSES

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def predict(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        logits = np.stack(
            [np.arange(CLASSES, dtype=np.float32) * (1 + int(i[0, 0, 0]) / 255) for i in batch]
        )
        if self.mode == "probabilities":
            return softmax(logits)
        if self.mode == "independent":
            return np.full_like(logits, 0.5)
        if self.mode == "nan":
            return np.full_like(logits, np.nan)
        return logits


class ScoresBackend:
    """Loads a file `MAGIC + mode` as a `ScoresClassifier`, to serve such a model on loopback."""

    name = "scores"
    kind = "scores-v1"
    serves = "a scores file"
    archive_member = None
    entry_name = "scores"

    def find(self, served: Path) -> Path | None:
        return served if served.is_file() and served.read_bytes().startswith(MAGIC) else None

    def likely_at(self, url: str) -> bool:
        return False

    def preload(self) -> None:
        return None

    def load(self, path: Path, threads: int) -> Classifier:
        return ScoresClassifier(path.read_bytes().removeprefix(MAGIC).decode())


def test_rows_are_told_apart() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.0, 0.0, 1.0]], np.float32)
    quantized = np.array([[0.66, 0.0, 0.0]], np.float32)  # tiny scores rounded to 0

    assert output_form(probabilities) == "probabilities"
    assert output_form(quantized) == "probabilities"
    assert output_form(np.array([[2.0, -1.0, 0.5]], np.float32)) == "logits"
    assert output_form(np.array([[3.0, 1.0, 0.5]], np.float32)) == "logits"
    with pytest.raises(ModelError, match=r"neither probabilities nor logits: .* sum to 2.5"):
        output_form(np.full((2, 5), 0.5, np.float32))
    with pytest.raises(ModelError, match="NaN or infinite"):
        output_form(np.array([[np.inf, 0.0]], np.float32))


def test_probabilities_are_used_as_they_are_and_logits_get_a_softmax() -> None:
    as_is = ScoresClassifier("probabilities")
    with capture_logs() as logs:
        kept = with_probabilities(as_is)
        wrapped = with_probabilities(ScoresClassifier("logits"))

    assert kept is as_is
    assert isinstance(wrapped, SoftmaxClassifier)
    assert (wrapped.backend, wrapped.num_classes) == ("scores", CLASSES)
    rows = wrapped.predict(np.zeros((2, 224, 224, 3), np.uint8))
    np.testing.assert_allclose(rows.sum(axis=1), 1.0, rtol=1e-6)
    assert rows.min() >= 0
    forms = [(e["form"], e["softmax_applied"]) for e in logs if e["event"] == "model_outputs"]
    assert forms == [("probabilities", False), ("logits", True)]


@pytest.mark.parametrize(("mode", "message"), [("independent", "neither"), ("nan", "NaN")])
def test_outputs_that_cannot_be_a_distribution_are_refused(mode: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        with_probabilities(ScoresClassifier(mode))


async def test_a_logits_only_model_served_on_loopback_answers_probabilities(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    model_url = http_server.add_bytes("/logits-model", MAGIC + b"logits")
    labels = "\n".join(f"{i},bird {i}" for i in range(CLASSES)).encode()
    labels_url = http_server.add_bytes("/labels.csv", labels, "text/csv")
    backends = BUILTIN_BACKENDS.plus(ScoresBackend())

    with ThreadPoolExecutor(1) as pool:
        async with aiohttp.ClientSession() as session:
            fetcher = ModelFetcher(session, tmp_path, backends=backends)
            with capture_logs() as logs:
                model = await load_model(fetcher, model_url, labels_url, threads=1, pool=pool)

    rows = model.classifier.predict(np.full((1, 224, 224, 3), 255, np.uint8))
    assert rows.sum() == pytest.approx(1.0, rel=1e-6)
    assert int(rows.argmax()) == CLASSES - 1
    assert [e["form"] for e in logs if e["event"] == "model_outputs"] == ["logits"]
    identity = [e for e in logs if e["event"] == "model_identity"]
    assert identity[0]["backend"] == "scores"
    assert len(identity[0]["sha256"]) == 64
