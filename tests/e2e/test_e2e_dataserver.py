"""e2e.dataserver: the served folder, the large photos and the web server, on loopback."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from e2e import dataserver
from e2e.settings import Environment
from e2e.shell import Unavailable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fake_data(root: Path) -> Path:
    (root / "aiy_birds_v1").mkdir(parents=True)
    (root / "aiy_birds_v1" / "birds_V1_3.tflite").write_bytes(b"model")
    (root / "aiy_birds_v1" / "labelmap.csv").write_text("id,name\n0,bird\n")
    (root / "photos").mkdir()
    for index, name in enumerate(dataserver.EXPECTED):
        Image.new("RGB", (64, 48), (40 * index, 90, 150)).save(root / "photos" / name)
    return root


def test_missing_data_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(Unavailable, match="E2E_DATA_DIR"):
        dataserver.check_data(tmp_path)


def test_large_photo_is_a_12_megapixel_jpeg_made_once(tmp_path) -> None:
    source = tmp_path / "small.png"
    Image.new("RGB", (80, 60), (200, 30, 30)).save(source)
    target = dataserver.make_large(source, tmp_path / "large.jpg")
    with Image.open(target) as image:
        assert (image.format, image.size) == ("JPEG", dataserver.LARGE_SIZE)
    stamp = target.stat().st_mtime_ns
    dataserver.make_large(source, target)
    assert target.stat().st_mtime_ns == stamp


def test_expected_species_cover_the_large_versions() -> None:
    species = dataserver.expected_species()
    assert species["coral_parrot.jpg"] == species["large_coral_parrot.jpg"] == "Ara macao"
    assert species["large_coral_bird.jpg"] == "Poecile atricapillus"


def test_the_site_is_served_over_http(tmp_path) -> None:
    data = fake_data(tmp_path / "data")
    env = Environment.from_env(
        {
            "E2E_DATA_DIR": str(data),
            "E2E_OUT_DIR": str(tmp_path / "out"),
            "E2E_HOST_IP": "127.0.0.1",
            "E2E_HTTP_PORT": str(free_port()),
        }
    )
    site = dataserver.prepare(env)
    assert site.model_url == f"{env.base_url}/aiy_birds_v1/birds_V1_3.tflite"
    with dataserver.serving(env, site):
        with urllib.request.urlopen(site.labels_url, timeout=10) as answer:
            assert answer.read() == b"id,name\n0,bird\n"
        for url in site.photo_urls() + site.photo_urls(large=True):
            with urllib.request.urlopen(url, timeout=10) as answer:
                assert answer.status == 200
    assert len(site.photo_urls(large=True)) == len(dataserver.EXPECTED)
