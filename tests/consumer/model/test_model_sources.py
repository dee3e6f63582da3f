"""Every form the bird classifier is published in today resolves (consumer/model/sources.py,
download.py), reproduced on loopback: tfhub.dev → Kaggle → signed storage URL, Kaggle handles
and model pages, Kaggle's tar.gz holding the `.tflite`, the lite-format path answering 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs

from consumer.model import BUILTIN_BACKENDS, ModelError, ModelFetcher
from consumer.model.download import make_model_session
from consumer.model.sources import KAGGLE_URL, resolve_source
from tests.conftest import LoopbackServer
from tests.consumer.model.published import (
    FAKE_TFLITE,
    KAGGLE_LITE,
    KAGGLE_TF1,
    SIGNED_QUERY,
    STORAGE_LITE,
    STORAGE_TF1,
    TFHUB_LITE_PATH,
    TFHUB_PATH,
    PublishedModel,
    publish_like_today,
)
from tests.consumer.model.support import HTML_PAGE, LoopbackResolver, make_tar

API = f"{KAGGLE_URL}/api/v1/models"


@pytest.mark.parametrize(
    ("handle", "url", "fallbacks"),
    [
        (
            "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1",
            "https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1?tf-hub-format=compressed",
            (f"{API}/{KAGGLE_TF1}/download",),
        ),
        (
            "https://tfhub.dev/google/lite-model/aiy/vision/classifier/birds_V1/3",
            "https://tfhub.dev/google/lite-model/aiy/vision/classifier/birds_V1/3?lite-format=tflite",
            (f"{API}/{KAGGLE_LITE}/download",),
        ),
        (
            "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5",
            "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5"
            "?tf-hub-format=compressed",
            (),  # no known Kaggle twin: no fallback
        ),
        (KAGGLE_LITE, f"{API}/{KAGGLE_LITE}/download", ()),
        (
            "https://www.kaggle.com/models/google/aiy/frameworks/TensorFlow1/variations/"
            "vision-classifier-birds-v1/versions/1",
            f"{API}/{KAGGLE_TF1}/download",
            (),
        ),
        (
            "https://kaggle.com/models/google/aiy/frameworks/tfLite/variations/"
            "vision-classifier-birds-v1/versions/3/",
            f"{API}/{KAGGLE_LITE}/download",
            (),
        ),
        (
            "https://example.org/m.tar.gz?sig=a%2Fb%40c",
            "https://example.org/m.tar.gz?sig=a%2Fb%40c",
            (),
        ),
    ],
)
def test_each_published_form_resolves_to_its_download(
    handle: str, url: str, fallbacks: tuple[str, ...]
) -> None:
    source = resolve_source(handle)

    assert (source.handle, source.url, source.fallbacks) == (handle, url, fallbacks)


def test_the_kaggle_base_is_a_setting() -> None:
    source = resolve_source(KAGGLE_LITE, "http://127.0.0.1:8000/")

    assert source.url == f"http://127.0.0.1:8000/api/v1/models/{KAGGLE_LITE}/download"


@pytest.mark.parametrize(
    ("handle", "message"),
    [
        ("google/aiy/tfLite/vision-classifier-birds-v1", r"names no version: add it \(.*/1\)"),
        ("birds", r"neither a URL nor a Kaggle handle \(owner/model/framework/variation/version"),
        (
            "https://www.kaggle.com/models/google/aiy/frameworks/tfLite/variations/"
            "vision-classifier-birds-v1",
            r"not a versioned Kaggle model page: give https://www.kaggle.com/models/OWNER/.*"
            r"/versions/N or the handle",
        ),
        ("https://www.kaggle.com/models/google/aiy", "not a versioned Kaggle model page"),
    ],
)
def test_unversioned_or_unknown_forms_are_refused_with_the_right_form(
    handle: str, message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        resolve_source(handle)


@pytest.fixture
async def hub_session() -> AsyncIterator[aiohttp.ClientSession]:
    """The model session, with every host name resolved to loopback."""
    async with make_model_session(aiohttp.TCPConnector(resolver=LoopbackResolver())) as session:
        yield session


@pytest.fixture
def published(http_server: LoopbackServer) -> PublishedModel:
    return publish_like_today(http_server)


async def test_tfhub_redirects_through_kaggle_to_a_signed_url_passed_on_as_sent(
    hub_session: aiohttp.ClientSession,
    http_server: LoopbackServer,
    published: PublishedModel,
    tmp_path: Path,
) -> None:
    fetcher = ModelFetcher(hub_session, tmp_path, kaggle_url=published.kaggle)

    artifact = await fetcher.fetch_model(published.tfhub_handle)

    assert artifact.kind == "savedmodel"
    assert published.signed_queries == [SIGNED_QUERY]  # %40 %2F %2B %3D untouched
    assert http_server.hits[TFHUB_PATH] == 1
    assert http_server.hits[STORAGE_TF1] == 1


async def test_a_requoting_session_breaks_the_signature(
    http_server: LoopbackServer, published: PublishedModel, tmp_path: Path
) -> None:
    # Why the model session must not re-quote: aiohttp's default turns %40 and %2F into @ and /.
    connector = aiohttp.TCPConnector(resolver=LoopbackResolver())
    async with aiohttp.ClientSession(connector=connector) as requoting:
        with pytest.raises(ModelError, match="HTTP 403"):
            await ModelFetcher(requoting, tmp_path).fetch_model(published.tfhub_handle)

    assert len(published.signed_queries) == 1
    assert published.signed_queries[0] != SIGNED_QUERY
    assert "%40" not in published.signed_queries[0]


async def test_a_500_on_the_lite_format_path_falls_back_to_kaggle_with_a_warning(
    hub_session: aiohttp.ClientSession,
    http_server: LoopbackServer,
    published: PublishedModel,
    tmp_path: Path,
) -> None:
    fetcher = ModelFetcher(hub_session, tmp_path, kaggle_url=published.kaggle)

    with capture_logs() as logs:
        artifact = await fetcher.fetch_model(published.tfhub_lite_handle)

    assert artifact.kind == "tflite"
    assert artifact.path.read_bytes() == FAKE_TFLITE  # out of Kaggle's tar.gz
    assert artifact.url == published.tfhub_lite_handle  # cached under the setting
    assert http_server.hits[TFHUB_LITE_PATH] == 1  # the 500 was not retried
    fallbacks = [e for e in logs if e["event"] == "model_source_fallback"]
    assert fallbacks == [
        {
            "event": "model_source_fallback",
            "log_level": "warning",
            "handle": published.tfhub_lite_handle,
            "failed_url": f"{published.tfhub_lite_handle}?lite-format=tflite",
            "status": 500,
            "next_url": f"{published.kaggle}/api/v1/models/{KAGGLE_LITE}/download",
        }
    ]


async def test_a_5xx_without_a_fallback_stays_a_retryable_error(
    hub_session: aiohttp.ClientSession, http_server: LoopbackServer, tmp_path: Path
) -> None:
    published = publish_like_today(http_server, lite_redirect_status=503)
    fetcher = ModelFetcher(hub_session, tmp_path, kaggle_url=published.kaggle)
    other = published.tfhub_lite_handle.replace("birds_V1/3", "birds_V1/9")
    http_server.routes[TFHUB_LITE_PATH.replace("/3", "/9")] = http_server.routes[TFHUB_LITE_PATH]

    with pytest.raises(ModelError, match="answered HTTP 503") as caught:
        await fetcher.fetch_model(other)

    assert (caught.value.retryable, caught.value.status) == (True, 503)


@pytest.mark.parametrize("form", ["handle", "page"])
async def test_kaggle_handles_and_pages_download_the_tflite_inside_the_archive(
    hub_session: aiohttp.ClientSession,
    http_server: LoopbackServer,
    published: PublishedModel,
    tmp_path: Path,
    form: str,
) -> None:
    fetcher = ModelFetcher(hub_session, tmp_path, kaggle_url=published.kaggle)
    handle = KAGGLE_LITE if form == "handle" else published.lite_page_url

    artifact = await fetcher.fetch_model(handle)
    again = await fetcher.fetch_model(handle)

    assert (artifact.kind, artifact.path.name) == ("tflite", "model.tflite")
    assert artifact.path.read_bytes() == FAKE_TFLITE
    assert sorted(p.name for p in artifact.path.parent.iterdir()) == [
        "model.tflite",
        "source.json",
    ]  # nothing else of the archive kept
    assert again.from_cache is True
    assert http_server.hits[STORAGE_LITE] == 1


async def test_a_model_page_serving_html_names_the_forms_that_work(
    hub_session: aiohttp.ClientSession, http_server: LoopbackServer, tmp_path: Path
) -> None:
    page = http_server.add_bytes("/some/model/page", HTML_PAGE, "text/html")

    with pytest.raises(ModelError) as caught:
        await ModelFetcher(hub_session, tmp_path).fetch_model(page)

    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("served an HTML page")
    assert "Kaggle handle (owner/model/framework/variation/version)" in message
    assert "versioned Kaggle model page URL" in message
    assert caught.value.retryable is False


async def test_an_archive_with_two_tflite_models_is_refused(
    hub_session: aiohttp.ClientSession, http_server: LoopbackServer, tmp_path: Path
) -> None:
    archive = make_tar([("a.tflite", FAKE_TFLITE), ("sub/b.tflite", FAKE_TFLITE)])
    url = http_server.add_bytes("/two.tar.gz", archive)

    with pytest.raises(ModelError, match=r"holds 2 TFLite models \(a.tflite, sub/b.tflite\)"):
        await ModelFetcher(hub_session, tmp_path / "cache").fetch_model(url)
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.mark.parametrize(
    ("handle", "backend"),
    [
        (KAGGLE_LITE, "litert"),
        (KAGGLE_TF1, "tensorflow"),
        (
            "https://www.kaggle.com/models/google/aiy/frameworks/tfLite/variations/"
            "vision-classifier-birds-v1/versions/3",
            "litert",
        ),
        (f"{API}/{KAGGLE_LITE}/download", "litert"),
        ("https://tfhub.dev/google/lite-model/aiy/vision/classifier/birds_V1/3", "litert"),
        ("https://tfhub.dev/google/aiy/vision/classifier/birds_V1/1", "tensorflow"),
    ],
)
def test_the_framework_imported_ahead_follows_the_form(handle: str, backend: str) -> None:
    # A Kaggle TFLite handle must not start importing TensorFlow while it downloads.
    guess = BUILTIN_BACKENDS.likely_at(handle)

    assert guess is not None
    assert guess.name == backend
