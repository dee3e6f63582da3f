"""The real TFLite model, label map and photos (when BIRDWATCH_REAL_MODEL_DIR points at them),
served from loopback so the real download, cache and load code runs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest

from consumer import cli
from tests.conftest import REAL_MODEL_DIR, LoopbackServer
from tests.consumer.model.published import KAGGLE_LITE, publish_like_today
from tests.images import HTML_PAGE

# From the data folder's README: photos this model recognises confidently.
EXPECTED_TOP1 = {
    "coral_bird.bmp": "Poecile atricapillus",
    "coral_parrot.jpg": "Ara macao",
    "wasmedge_bird.jpg": "Aix galericulata",
    "tflitesupport_sparrow.jpg": "Passer domesticus",
}

pytestmark = pytest.mark.skipif(
    not REAL_MODEL_DIR or not Path(REAL_MODEL_DIR, "aiy_birds_v1").is_dir(),
    reason="BIRDWATCH_REAL_MODEL_DIR does not point at the real model data",
)


@pytest.mark.parametrize("served_as", ["tflite", "kaggle-targz"])
async def test_real_model_recognises_the_expected_species(
    http_server: LoopbackServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    served_as: str,
) -> None:
    data = Path(REAL_MODEL_DIR)
    tflite = (data / "aiy_birds_v1/birds_V1_3.tflite").read_bytes()
    if served_as == "tflite":
        monkeypatch.setenv("BIRDWATCH_MODEL_URL", http_server.add_bytes("/m/birds.tflite", tflite))
    else:
        # As Kaggle serves it: its download endpoint redirects to a signed tar.gz holding it.
        published = publish_like_today(http_server, tflite=tflite, named_hosts=False)
        monkeypatch.setenv("BIRDWATCH_MODEL_URL", KAGGLE_LITE)
        monkeypatch.setenv("BIRDWATCH_KAGGLE_URL", published.kaggle)
    http_server.add_bytes("/m/labels.csv", (data / "aiy_birds_v1/labelmap.csv").read_bytes())
    urls = [
        http_server.add_bytes(f"/p/{p.name}", p.read_bytes())
        for p in sorted((data / "photos").iterdir())
    ]
    urls.append(http_server.add_bytes("/p/page.html", HTML_PAGE, "text/html"))
    urls.append(http_server.url("/p/missing.jpg"))
    monkeypatch.setenv("BIRDWATCH_LABELS_URL", http_server.url("/m/labels.csv"))
    monkeypatch.setenv("BIRDWATCH_ALLOW_PRIVATE_NETWORKS", "true")
    monkeypatch.setenv("BIRDWATCH_MODEL_CACHE_DIR", str(tmp_path / "cache"))

    code = await asyncio.to_thread(cli.main, ["classify", "--json", *urls])
    results = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert code == 1  # the HTML page and the 404
    assert len(results) == len(urls)
    by_name = {r["url"].rsplit("/", 1)[1]: r for r in results}
    for name, species in EXPECTED_TOP1.items():
        assert by_name[name]["status"] == "ok", by_name[name]
        assert by_name[name]["predictions"][0]["label"] == species
        assert by_name[name]["predictions"][0]["score"] > 0.5
    assert by_name["page.html"]["error"]["code"] == "not_an_image"
    assert by_name["missing.jpg"]["error"]["code"] == "http_status"
    photos = [r for r in results if r["url"].rsplit("/", 1)[1] in os.listdir(data / "photos")]
    assert all(r["status"] == "ok" and len(r["predictions"]) == 3 for r in photos)
