"""The "internet" of the e2e runs: the model, the label map and photos over HTTP from the host.

Nothing is baked into an image: the consumers download the model and the photos from a plain
`python -m http.server` on the host, at an address containers and pods reach (settings.py).
Large photos (12 MP, 2-5 MB, like the Wikipedia originals the service was written for) are made
once from the labelled photos and kept in the output folder.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from e2e.settings import Environment
from e2e.shell import E2EError, Unavailable, say

MODEL = "aiy_birds_v1/birds_V1_3.tflite"
LABELS = "aiy_birds_v1/labelmap.csv"
# Photos the model recognises with confidence, and their species (../shared/data/README.md).
EXPECTED = {
    "coral_bird.bmp": "Poecile atricapillus",
    "coral_parrot.jpg": "Ara macao",
    "wasmedge_bird.jpg": "Aix galericulata",
    "tflitesupport_sparrow.jpg": "Passer domesticus",
}
LARGE_SIZE = (4000, 3000)
LARGE_PREFIX = "large_"


def large_name(photo: str) -> str:
    return LARGE_PREFIX + photo.rsplit(".", 1)[0] + ".jpg"


def expected_species() -> dict[str, str]:
    """Photo file name -> species, for the photos and their large versions."""
    return {**EXPECTED, **{large_name(p): s for p, s in EXPECTED.items()}}


def check_data(data_dir: Path) -> None:
    missing = [
        p
        for p in (MODEL, LABELS, *(f"photos/{n}" for n in EXPECTED))
        if not (data_dir / p).is_file()
    ]
    if missing:
        raise Unavailable(
            f"the model and photos are missing in {data_dir} ({missing[0]}, ...): "
            "set E2E_DATA_DIR to a folder laid out like ../shared/data"
        )


def make_large(source: Path, target: Path) -> Path:
    """Upscale a photo to 12 MP with a faint grain (as a camera's noise and detail would make
    it compress like a real photo), JPEG quality 95; done once."""
    if target.exists():
        return target
    rng = np.random.default_rng(7)
    with Image.open(source) as image:
        big = image.convert("RGB").resize(LARGE_SIZE, Image.Resampling.LANCZOS)
    pixels = np.asarray(big, dtype=np.float32)
    pixels += rng.normal(0.0, 3.0, size=pixels.shape[:2])[..., None]
    grainy = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    partial = target.with_suffix(".part")
    grainy.save(partial, format="JPEG", quality=95)
    partial.replace(target)
    return target


@dataclass(frozen=True)
class Site:
    """The served folder: links to the data folder and the generated large photos."""

    root: Path
    base_url: str

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path}"

    @property
    def model_url(self) -> str:
        return self.url(MODEL)

    @property
    def labels_url(self) -> str:
        return self.url(LABELS)

    def photo_urls(self, large: bool = False) -> list[str]:
        if large:
            return [self.url(f"large/{large_name(p)}") for p in EXPECTED]
        return [self.url(f"photos/{p}") for p in EXPECTED]


def prepare(env: Environment) -> Site:
    check_data(env.data_dir)
    root = env.out_dir / "www"
    large = env.out_dir / "large"
    for folder in (root, large):
        folder.mkdir(parents=True, exist_ok=True)
    for name, target in (
        ("aiy_birds_v1", env.data_dir / "aiy_birds_v1"),
        ("photos", env.data_dir / "photos"),
        ("large", large),
    ):
        link = root / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target.resolve(), target_is_directory=True)
    started = time.monotonic()
    for photo in EXPECTED:
        make_large(env.data_dir / "photos" / photo, large / large_name(photo))
    say(f"photos ready in {time.monotonic() - started:.1f} s ({large})")
    return Site(root, env.base_url)


@contextmanager
def serving(env: Environment, site: Site) -> Iterator[Site]:
    """`python -m http.server` on env.bind:env.port for the duration of the block."""
    log = (env.out_dir / "http-server.log").open("w", encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        "http.server",
        str(env.port),
        "--bind",
        env.bind,
        "--directory",
        str(site.root),
    ]
    say(f"serving {site.root} on {env.bind}:{env.port} as {site.base_url}")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        probe = f"http://{'127.0.0.1' if env.bind == '0.0.0.0' else env.bind}:{env.port}/{LABELS}"  # noqa: S104
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise E2EError(
                    f"the photo server could not start on {env.bind}:{env.port} "
                    f"(see {log.name}; set E2E_BIND_IP / E2E_HTTP_PORT)"
                )
            try:
                with urllib.request.urlopen(probe, timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise E2EError(f"the photo server does not answer at {probe}") from None
                time.sleep(0.2)
        yield site
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
