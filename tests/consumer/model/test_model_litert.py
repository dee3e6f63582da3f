"""The LiteRT backend (consumer/model/backends/litert.py) on the tiny uint8 model: batches of
any size, dequantized output, thread safety, and never an import of TensorFlow."""

from __future__ import annotations

import asyncio
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from consumer.model import (
    Classifier,
    ModelError,
    load_classifier,
    top_k,
)
from consumer.testing.models import (
    BLUE_CLASS,
    GREEN_CLASS,
    NUM_CLASSES,
    RED_CLASS,
)
from tests.conftest import LoopbackServer, TinyModels
from tests.consumer.model.tiny_checks import (
    COLOURS,
    EXPECTED_TOP3,
    TFLITE_ATOL,
    TFLITE_DIVISOR,
    artifact,
    assert_matches_tiny_model,
    mostly,
    solid,
)


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
