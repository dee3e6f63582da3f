"""Images that are small on the wire and huge in memory, beside a real photo, in one `classify`.

A 10,000 x 10,000 PNG of one colour is about 300 KB, a GIF of it about 100 KB; decoded, each is
100 million pixels. The child process runs `birdwatch classify` with the default settings (two
decode threads on this machine) on four of each and a 12 MP photo, and reports its peak resident
set (`VmHWM`: unlike `ru_maxrss`, which keeps the forking parent's size across exec, it is
the child's own). The bound is asserted; the figures go to .cache/reliability/.
"""

from __future__ import annotations

import asyncio
import io
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from PIL import Image

from consumer.testing.models import RED_CLASS
from tests.conftest import LoopbackServer, TinyModels
from tests.images import RED
from tests.reliability_support import child_env, record_figures, timed

pytestmark = pytest.mark.slow

SIDE = 10_000
# The target for four such images beside a photo (one took `classify` to 856 MB).
PEAK_BOUND_MB = 600
# Runs `birdwatch classify` and reports the process's own peak RSS (KiB) on stderr.
CHILD = (
    "import sys\n"
    "from pathlib import Path\n"
    "from consumer.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "status = Path('/proc/self/status').read_text().splitlines()\n"
    "peak = next(line.split()[1] for line in status if line.startswith('VmHWM:'))\n"
    "sys.stderr.write(f'peak_rss_kib={peak}\\n')\n"
    "sys.exit(code)\n"
)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def solid_png_streamed(side: int, rgb: tuple[int, int, int]) -> bytes:
    """A `side` x `side` RGB PNG of one colour, compressed row by row (never held decoded)."""
    row = b"\x00" + bytes(rgb) * side  # filter type 0, then the pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)  # 8-bit truecolour
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def solid_gif(side: int) -> bytes:
    """A `side` x `side` paletted GIF of one colour (Pillow's encoder: 100 MB while saving)."""
    img = Image.new("P", (side, side), 1)
    img.putpalette([0, 0, 0, *RED] + [0] * 762)
    buf = io.BytesIO()
    img.save(buf, "GIF")
    return buf.getvalue()


def noisy_photo(size: tuple[int, int]) -> bytes:
    """A 12 MP JPEG, red with noise, as a camera would send (a few MB)."""
    import numpy as np

    rng = np.random.default_rng(7)
    pixels = np.clip(rng.normal(0, 12, (size[1], size[0], 3)) + np.array(RED), 0, 255).astype(
        np.uint8
    )
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def outcome_of(result: dict[str, Any]) -> str:
    return "ok" if result["status"] == "ok" else str(result["error"]["code"])


@pytest.fixture(scope="module")
def payloads() -> dict[str, bytes]:
    return {
        "png": solid_png_streamed(SIDE, (20, 120, 200)),
        "gif": solid_gif(SIDE),
        "photo": noisy_photo((4000, 3000)),
    }


@pytest.mark.parametrize(
    ("budget_mib", "png_outcome"),
    # The default budget refuses a true-colour 100 MP PNG (~415 MiB to decode) as too large;
    # twice that admits one at a time, so it is classified and the bound still holds.
    [(None, "too_large"), (512, "ok")],
    ids=["default-budget", "512-mib-budget"],
)
async def test_huge_images_beside_a_photo_stay_within_the_memory_bound(
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    payloads: dict[str, bytes],
    tmp_path: Path,
    budget_mib: int | None,
    png_outcome: str,
) -> None:
    model_url = http_server.add_bytes("/model.tflite", tiny_models.tflite.read_bytes())
    labels_url = http_server.add_bytes("/labels.csv", tiny_models.labels_csv, "text/csv")
    urls = [http_server.add_bytes(f"/big/{i}.png", payloads["png"], "image/png") for i in range(4)]
    urls += [http_server.add_bytes(f"/big/{i}.gif", payloads["gif"], "image/gif") for i in range(4)]
    photo = http_server.add_bytes("/photo.jpeg", payloads["photo"], "image/jpeg")
    urls.insert(3, photo)
    env = child_env(
        BIRDWATCH_MODEL_URL=model_url,
        BIRDWATCH_LABELS_URL=labels_url,
        BIRDWATCH_MODEL_CACHE_DIR=str(tmp_path / "cache"),
        BIRDWATCH_ALLOW_PRIVATE_NETWORKS="true",
        BIRDWATCH_LOG_FORMAT="json",
    )
    if budget_mib is not None:
        env["BIRDWATCH_DECODE_MEMORY_MIB"] = str(budget_mib)

    with timed() as took:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            "classify",
            "--json",
            *urls,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=tmp_path,
        )
        try:
            out, err = await asyncio.wait_for(child.communicate(), 240)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    stderr = err.decode(errors="replace")
    peak_line = [line for line in stderr.splitlines() if line.startswith("peak_rss_kib=")]
    assert peak_line, stderr[-3000:]
    peak_mb = int(peak_line[0].split("=")[1]) * 1024 / 1e6
    results: list[dict[str, Any]] = [orjson.loads(line) for line in out.splitlines()]
    by_url = {r["url"]: r for r in results}

    assert len(results) == len(urls), stderr[-3000:]
    assert by_url[photo]["status"] == "ok"
    assert by_url[photo]["predictions"][0]["label_id"] == RED_CLASS
    outcomes = {url: outcome_of(r) for url, r in by_url.items()}
    assert [outcomes[u] for u in urls if u.endswith(".gif")] == ["ok"] * 4
    assert [outcomes[u] for u in urls if u.endswith(".png")] == [png_outcome] * 4
    assert peak_mb < PEAK_BOUND_MB, f"peak RSS {peak_mb:.0f} MB"

    record_figures(
        f"decode_memory_{budget_mib or 'default'}",
        {
            "decode_memory_mib": budget_mib or "default (256)",
            "images": {"png_10000x10000": 4, "gif_10000x10000": 4, "jpeg_4000x3000": 1},
            "payload_bytes": {name: len(data) for name, data in payloads.items()},
            "peak_rss_mb": round(peak_mb, 1),
            "bound_mb": PEAK_BOUND_MB,
            "seconds": took[0],
            "outcomes": {url.rsplit("/", 1)[-1]: outcomes[url] for url in urls},
            "exit_code": child.returncode,
        },
    )
