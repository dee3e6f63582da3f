"""`birdwatch classify` end to end: loopback model, labels and images; real download code."""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
from pathlib import Path

import orjson
import pytest

from consumer import cli
from consumer.testing.models import BLUE_CLASS, GREEN_CLASS, GREY_CLASS, RED_CLASS
from tests.conftest import LoopbackServer, TinyModels
from tests.images import BLUE, GREEN, GREY, HTML_PAGE, RED, solid_jpeg, solid_png


def serve_model(
    server: LoopbackServer, models: TinyModels, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Put a tiny model and its labels on `server` and name them in the environment."""
    if kind == "tflite":
        server.add_bytes("/model/birds.tflite", models.tflite.read_bytes())
        model_url = server.url("/model/birds.tflite")
    else:
        server.add_bytes("/model/birds.tar.gz", models.tf2_archive.read_bytes())
        model_url = server.url("/model/birds.tar.gz")
    server.add_bytes("/labels.csv", models.labels_csv, "text/csv")
    monkeypatch.setenv("BIRDWATCH_MODEL_URL", model_url)
    monkeypatch.setenv("BIRDWATCH_LABELS_URL", server.url("/labels.csv"))
    monkeypatch.setenv("BIRDWATCH_LOG_FORMAT", "json")


@pytest.fixture
def tflite_model(
    http_server: LoopbackServer, tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiny tflite model on the loopback server, named in the environment."""
    serve_model(http_server, tiny_models, monkeypatch, "tflite")


def red_jpeg(server: LoopbackServer) -> str:
    return server.add_bytes("/img/red.jpg", solid_jpeg(RED), "image/jpeg")


def serve_images(server: LoopbackServer) -> list[str]:
    return [
        server.add_bytes("/img/red.jpg", solid_jpeg(RED), "image/jpeg"),
        server.add_bytes("/img/green.png", solid_png(GREEN), "image/png"),
        server.add_bytes("/img/page.jpg", HTML_PAGE, "image/jpeg"),
        server.url("/img/missing.jpg"),
        server.add_bytes("/img/blue.jpg", solid_jpeg(BLUE, (1600, 1200)), "image/jpeg"),
        server.add_bytes("/img/grey.jpg", solid_jpeg(GREY), "image/jpeg"),
    ]


async def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(cli.main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def private_ok(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BIRDWATCH_ALLOW_PRIVATE_NETWORKS", "true")
    monkeypatch.setenv("BIRDWATCH_MODEL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BIRDWATCH_INFERENCE_THREADS", "1")


@pytest.mark.usefixtures("private_ok", "tflite_model")
async def test_json_output_one_result_per_line_in_input_order(
    http_server: LoopbackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    urls = serve_images(http_server)
    code, out, err = await run_cli(capsys, "classify", "--json", *urls)

    lines = out.splitlines()
    assert len(lines) == len(urls)
    results = [orjson.loads(line) for line in lines]
    assert [r["url"] for r in results] == urls
    assert [r["id"] for r in results] == [str(i) for i in range(1, 7)]
    top1 = {
        r["url"].rsplit("/", 1)[1]: r["predictions"][0]["label_id"]
        for r in results
        if r["status"] == "ok"
    }
    assert top1 == {
        "red.jpg": RED_CLASS,
        "green.png": GREEN_CLASS,
        "blue.jpg": BLUE_CLASS,
        "grey.jpg": GREY_CLASS - 1,  # the best species: "background" is never one of them
    }
    grey = results[5]
    assert grey["background"]["label"] == "background"
    assert grey["background"]["label_id"] == GREY_CLASS
    assert grey["background"]["score"] > grey["predictions"][0]["score"]
    assert len(grey["predictions"]) == 3
    assert all(p["label"] != "background" for r in results for p in r["predictions"])
    scores = [p["score"] for p in grey["predictions"]]
    assert scores == sorted(scores, reverse=True)
    assert results[2]["error"]["code"] == "not_an_image"
    assert results[3]["error"]["code"] == "http_status"
    assert code == 1
    # Logs go to stderr as JSON lines, with the run summary.
    events = [orjson.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "model_fetched" in events
    assert "run_done" in events


@pytest.mark.usefixtures("private_ok", "tflite_model")
async def test_human_output_and_timing_summary(
    http_server: LoopbackServer, capsys: pytest.CaptureFixture[str]
) -> None:
    red = red_jpeg(http_server)
    code, out, err = await run_cli(capsys, "classify", red)
    assert code == 0
    assert f"[1] {red}" in out
    assert f"1. Species {RED_CLASS}" in out
    assert "0.00%" not in out
    assert "background" not in out
    assert re.search(r"queued \d+ ms, fetched \d+ ms, decoded \d+ ms, classified \d+ ms", out)
    for part in ("model fetch", "model load", "image fetches", "image decodes", "inference"):
        assert part in out
    assert out.count("Timings:") == 1
    assert out.index("Timings:") > out.index(f"1. Species {RED_CLASS}")
    assert "(download," in out
    # The summary is printed once: the log does not repeat it at the default level.
    assert "run_done" not in err

    # A second run is served from the model cache.
    code, out, _ = await run_cli(capsys, "classify", red)
    assert code == 0
    assert "(cache," in out
    assert http_server.hits["/model/birds.tflite"] == 1


@pytest.mark.tf
@pytest.mark.usefixtures("private_ok")
async def test_tensorflow_savedmodel_backend(
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serve_model(http_server, tiny_models, monkeypatch, "savedmodel")
    red = red_jpeg(http_server)
    blue = http_server.add_bytes("/img/blue.jpg", solid_jpeg(BLUE), "image/jpeg")
    code, out, _ = await run_cli(capsys, "classify", "--json", red, blue)
    assert code == 0
    results = [orjson.loads(line) for line in out.splitlines()]
    assert [r["predictions"][0]["label_id"] for r in results] == [RED_CLASS, BLUE_CLASS]


@pytest.mark.usefixtures("tflite_model")
async def test_private_addresses_are_refused_but_the_model_still_loads(
    http_server: LoopbackServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BIRDWATCH_MODEL_CACHE_DIR", str(tmp_path / "cache"))
    red = red_jpeg(http_server)
    port = red.split(":")[2].split("/")[0]
    urls = [
        red,
        f"http://localhost:{port}/img/red.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.jpg",
        "file:///etc/passwd",
    ]
    code, out, _ = await run_cli(capsys, "classify", "--json", *urls)
    codes = [orjson.loads(line)["error"]["code"] for line in out.splitlines()]
    assert codes == ["blocked_url", "blocked_url", "blocked_url", "blocked_url", "invalid_event"]
    assert code == 1
    assert http_server.hits.get("/img/red.jpg") is None
    assert http_server.hits["/model/birds.tflite"] == 1


@pytest.mark.usefixtures("private_ok", "tflite_model")
async def test_urls_from_file_and_stdin(
    http_server: LoopbackServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    red = red_jpeg(http_server)
    green = http_server.add_bytes("/img/green.jpg", solid_jpeg(GREEN), "image/jpeg")
    listing = tmp_path / "urls.txt"
    listing.write_text(f"# photos\n{red}\n\n  {green}  \n")
    code, out, _ = await run_cli(capsys, "classify", "--json", "--file", str(listing))
    assert code == 0
    assert [orjson.loads(line)["url"] for line in out.splitlines()] == [red, green]

    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{green}\n"))
    code, out, _ = await run_cli(capsys, "classify", "--json", red, "--file", "-")
    assert [orjson.loads(line)["url"] for line in out.splitlines()] == [red, green]


@pytest.mark.usefixtures("private_ok", "tflite_model")
async def test_no_urls_means_the_sample_images(
    http_server: LoopbackServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = (http_server.add_bytes("/s1.jpg", solid_jpeg(RED), "image/jpeg"),)
    monkeypatch.setattr("consumer.classify.SAMPLE_IMAGE_URLS", samples)
    code, out, _ = await run_cli(capsys, "classify", "--json")
    assert code == 0
    assert orjson.loads(out)["url"] == samples[0]


def test_the_sample_list_is_the_original_five() -> None:
    from consumer.classify import SAMPLE_IMAGE_URLS

    assert len(SAMPLE_IMAGE_URLS) == 5
    assert all(url.startswith("https://") for url in SAMPLE_IMAGE_URLS)


async def test_bad_setting_is_one_line_naming_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIRDWATCH_MAX_BATCH_SIZE", "lots")
    code, out, err = await run_cli(capsys, "classify", "http://h/x.jpg")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "BIRDWATCH_MAX_BATCH_SIZE" in err


@pytest.mark.usefixtures("private_ok", "tflite_model")
async def test_missing_model_exits_2_with_a_reason(
    http_server: LoopbackServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BIRDWATCH_MODEL_URL", http_server.url("/model/gone.tflite"))
    red = red_jpeg(http_server)
    code, out, err = await run_cli(capsys, "classify", red)
    assert code == 2
    assert "model error" in err
    assert "HTTP 404" in err
    assert out == ""


async def test_unreadable_file_and_empty_list_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = await run_cli(capsys, "classify", "--file", str(tmp_path / "none.txt"))
    assert code == 2
    assert "cannot read --file" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    code, _, err = await run_cli(capsys, "classify", "--file", str(empty))
    assert code == 2
    assert "no URLs" in err


def test_help_describes_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["classify", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--json" in out
    assert re.search(r"Exit\s+status", out)


@pytest.mark.usefixtures("tflite_model")
async def test_console_script_prints_only_json_on_stdout(http_server: LoopbackServer) -> None:
    red = red_jpeg(http_server)
    env = {
        **os.environ,
        "BIRDWATCH_ALLOW_PRIVATE_NETWORKS": "true",
        "BIRDWATCH_MODEL_CACHE_DIR": "",
        "BIRDWATCH_LOG_LEVEL": "debug",
    }
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("birdwatch")),
        "classify",
        "--json",
        red,
        http_server.url("/nope.jpg"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 1
    lines = out.decode().splitlines()
    assert [orjson.loads(line)["status"] for line in lines] == ["ok", "error"]
    logged = [orjson.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    per_image = [
        e for e in logged if e["event"] in ("image_fetched", "image_decoded", "image_failed")
    ]
    assert per_image
    assert all("id" in e and "url" in e for e in per_image)
