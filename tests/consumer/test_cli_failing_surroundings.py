"""The CLI facing what goes wrong around it: an unreachable model, an unwritable model cache,
misspelled settings; and what it tells: its version, its exit statuses, the URL of each result."""

from __future__ import annotations

import asyncio
import io
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from consumer import cli
from consumer.kafka.results import _print_result
from schemas import ErrorCode, Prediction, PredictionResult
from tests.conftest import LoopbackServer, TinyModels
from tests.consumer.test_cli import run_cli, serve_model
from tests.images import RED, solid_jpeg
from tests.reliability_support import record_figures

README = Path(__file__).resolve().parents[2] / "README.md"
# What `classify` may take to give up on a model it cannot reach, by default (the bound).
UNREACHABLE_BOUND_S = 60


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def classify_in_a_process(
    env: dict[str, str], *urls: str, timeout_s: float = 120
) -> tuple[int, str, str, float]:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("birdwatch")),
        "classify",
        "--json",
        *urls,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode(), time.monotonic() - started


def only_message_line(err: str) -> str:
    """The one `birdwatch:` line of stderr (the rest are JSON log events)."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("birdwatch:")]
    assert len(lines) == 1, err[-3000:]
    assert all(line.startswith("{") for line in err.splitlines() if line not in lines)
    return lines[0]


@pytest.mark.slow
async def test_classify_gives_up_on_an_unreachable_model_within_a_minute(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    red = http_server.add_bytes("/red.jpg", solid_jpeg(RED), "image/jpeg")
    base = {
        **os.environ,
        "BIRDWATCH_ALLOW_PRIVATE_NETWORKS": "true",
        "BIRDWATCH_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "BIRDWATCH_LOG_FORMAT": "json",
    }
    refused = f"http://127.0.0.1:{closed_port()}"
    cases = {
        "dns": {
            "BIRDWATCH_MODEL_URL": "https://models.birdwatch.invalid/birds.tflite",
            "BIRDWATCH_LABELS_URL": "https://models.birdwatch.invalid/labels.csv",
        },
        "refused": {
            "BIRDWATCH_MODEL_URL": f"{refused}/birds.tflite",
            "BIRDWATCH_LABELS_URL": f"{refused}/labels.csv",
        },
    }
    # Both at once: each takes the default retry window (30 s) before it gives up.
    runs = await asyncio.gather(
        *(classify_in_a_process({**base, **extra}, red) for extra in cases.values())
    )

    figures = {}
    for (name, extra), (code, out, err, took) in zip(cases.items(), runs, strict=True):
        assert code == cli.EXIT_USAGE, (name, err[-2000:])
        assert took < UNREACHABLE_BOUND_S, name
        assert out == ""
        line = only_message_line(err)
        assert line.startswith("birdwatch: model error: GET "), line
        host = "models.birdwatch.invalid" if name == "dns" else refused.removeprefix("http://")
        assert host in line  # what was tried
        assert re.search(r"gave up after \d+ attempt\(s\) in \d+ s", line)
        assert "BIRDWATCH_MODEL_URL" in line
        assert "BIRDWATCH_LABELS_URL" in line
        logged = [orjson.loads(x) for x in err.splitlines() if x.startswith("{")]
        retries = [e for e in logged if e["event"] == "model_load_retry"]
        assert retries, name
        figures[name] = {
            "model_url": extra["BIRDWATCH_MODEL_URL"],
            "exit_code": code,
            "exit_after_s": round(took, 1),
            "retries_logged": len(retries),
            "waits_s": [e["waited_s"] for e in retries],
            "stderr_line": line,
        }
    record_figures("classify_model_unreachable", figures)


async def test_a_model_server_that_comes_back_is_still_used(
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serve_model(http_server, tiny_models, monkeypatch, "tflite")
    model_route = http_server.routes["/model/birds.tflite"]

    async def busy_twice(request: web.Request) -> web.StreamResponse:
        if http_server.hits["/model/birds.tflite"] <= 2:
            return web.Response(status=503, text="busy")
        return await model_route(request)

    http_server.routes["/model/birds.tflite"] = busy_twice
    monkeypatch.setenv("BIRDWATCH_ALLOW_PRIVATE_NETWORKS", "true")
    monkeypatch.setenv("BIRDWATCH_MODEL_CACHE_DIR", str(tmp_path / "cache"))
    red = http_server.add_bytes("/red.jpg", solid_jpeg(RED), "image/jpeg")

    code, out, err = await run_cli(capsys, "classify", "--json", red)

    assert code == cli.EXIT_OK, err
    assert orjson.loads(out.splitlines()[0])["status"] == "ok"
    assert http_server.hits["/model/birds.tflite"] == 3
    assert err.count('"model_load_retry"') == 2


@pytest.mark.parametrize("how", ["not-a-folder", "read-only"])
async def test_classify_classifies_anyway_with_a_cache_it_cannot_write(
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    if how == "not-a-folder":
        (tmp_path / "blocker").write_text("a file where the cache should go")
        cache = tmp_path / "blocker" / "models"
    elif os.geteuid() == 0:
        # Root writes into a 0555 folder; sysfs refuses it any new folder (EPERM), as a
        # read-only mount would.
        cache = Path("/sys") / f"birdwatch-cache-{tmp_path.name}" / "models"
    else:
        cache = tmp_path / "read-only"
        cache.mkdir(mode=0o555)
    serve_model(http_server, tiny_models, monkeypatch, "tflite")
    monkeypatch.setenv("BIRDWATCH_ALLOW_PRIVATE_NETWORKS", "true")
    monkeypatch.setenv("BIRDWATCH_MODEL_CACHE_DIR", str(cache))
    red = http_server.add_bytes("/red.jpg", solid_jpeg(RED), "image/jpeg")

    code, out, err = await run_cli(capsys, "classify", "--json", red)

    assert code == cli.EXIT_OK, err
    assert orjson.loads(out.splitlines()[0])["status"] == "ok"
    assert "Traceback" not in err
    warnings = [orjson.loads(x) for x in err.splitlines() if "model_cache_unwritable" in x]
    assert len(warnings) == 1
    assert warnings[0]["cache_dir"] == str(cache)


# --- settings, version, exit statuses, results -------------------------------------------------


async def test_a_misspelled_setting_is_named_with_the_closest_known_one(
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serve_model(http_server, tiny_models, monkeypatch, "tflite")
    monkeypatch.setenv("BIRDWATCH_ALLOW_PRIVATE_NETWORKS", "true")
    monkeypatch.setenv("BIRDWATCH_MODEL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BIRDWATCH_MAX_BATCHSIZE", "4")
    (tmp_path / ".env").write_text("BIRDWATCH_FETCH_TIMEOUT=3\nBIRDWATCH_ZZZ=1\n")
    red = http_server.add_bytes("/red.jpg", solid_jpeg(RED), "image/jpeg")

    code, _, err = await run_cli(capsys, "classify", "--json", red)

    assert code == cli.EXIT_OK
    warned = {
        e["variable"]: e["did_you_mean"]
        for e in (orjson.loads(x) for x in err.splitlines() if x.startswith("{"))
        if e["event"] == "unknown_setting"
    }
    assert warned == {
        "BIRDWATCH_MAX_BATCHSIZE": "BIRDWATCH_MAX_BATCH_SIZE",
        "BIRDWATCH_FETCH_TIMEOUT": "BIRDWATCH_FETCH_TIMEOUT_S",
        "BIRDWATCH_ZZZ": None,
    }


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert re.fullmatch(r"birdwatch \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def test_every_exit_status_is_in_the_help_and_the_readme(
    capsys: pytest.CaptureFixture[str],
) -> None:
    statuses = {
        cli.EXIT_OK,
        cli.EXIT_SOME_FAILED,
        cli.EXIT_USAGE,
        cli.EXIT_KAFKA_UNAVAILABLE,
        cli.EXIT_INTERRUPTED,
    }
    assert len(statuses) == 5  # all distinct
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    help_text = capsys.readouterr().out
    readme = README.read_text(encoding="utf-8")
    table = readme[readme.index("### Exit status") :]
    for status in statuses:
        assert re.search(rf"^\s+{status}\s+\S", help_text, re.MULTILINE), status
        assert f"| `{status}` |" in table, status
    assert "Kafka unreachable" in help_text


@pytest.mark.parametrize("status", ["ok", "error"])
def test_results_name_the_url_of_every_result(status: str) -> None:
    url = "https://birds.example/robin.jpg"
    if status == "ok":
        predictions = [Prediction(label_id=i, label=f"bird {i}", score=0.3) for i in range(3)]
        result = PredictionResult.ok("id-1", url, predictions, "m", {})
    else:
        result = PredictionResult.failed("id-1", url, ErrorCode.HTTP_STATUS, "HTTP 404", "m")
    out = io.StringIO()
    _print_result(result.to_json(), False, out)
    line = out.getvalue()
    assert line.startswith(f"id-1 {status} ")
    assert line.rstrip().endswith(f"<- {url}")


async def test_no_cache_and_no_temporary_folder_is_one_line_and_status_2(
    http_server: LoopbackServer,
    tiny_models: TinyModels,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    serve_model(http_server, tiny_models, monkeypatch, "tflite")
    monkeypatch.setenv("BIRDWATCH_ALLOW_PRIVATE_NETWORKS", "true")
    monkeypatch.setenv("BIRDWATCH_MODEL_CACHE_DIR", "")  # no cache: a temporary folder only
    (tmp_path / "blocker").write_text("a file where the temporary folders should go")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "blocker" / "tmp"))
    red = http_server.add_bytes("/red.jpg", solid_jpeg(RED), "image/jpeg")

    code, out, err = await run_cli(capsys, "classify", "--json", red)

    assert code == cli.EXIT_USAGE
    assert out == ""
    line = only_message_line(err)
    assert "blocker" in line
