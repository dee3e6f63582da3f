"""Where a model is published today, and the URL that serves its bytes.

Accepted forms (README, "Model sources"):
- a TF Hub handle (`https://tfhub.dev/google/...`): tfhub.dev redirects to Kaggle Models;
- a Kaggle handle, `owner/model/framework/variation/version`;
- a Kaggle model page URL (`https://www.kaggle.com/models/<owner>/<model>/frameworks/
  <framework>/variations/<variation>/versions/<version>`);
- any direct URL of something a backend recognises (`.tflite`, `.tar.gz`...).

Kaggle handles and pages map to Kaggle's public download endpoint
(`<base>/api/v1/models/<handle>/download`), which answers with a redirect to a signed archive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from yarl import URL

from consumer.model.errors import ModelError

KAGGLE_URL = "https://www.kaggle.com"
TFHUB_HOSTS = frozenset({"tfhub.dev", "www.tfhub.dev"})
KAGGLE_HOSTS = frozenset({"kaggle.com", "www.kaggle.com"})
KAGGLE_HANDLE_FORM = "owner/model/framework/variation/version"
PAGE_FORM = (
    "https://www.kaggle.com/models/OWNER/MODEL/frameworks/FRAMEWORK/variations/VARIATION/versions/N"
)

_SLUG = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_HANDLE = re.compile(rf"^({_SLUG})/({_SLUG})/({_SLUG})/({_SLUG})(?:/(\d+))?$")
_PAGE = re.compile(
    rf"^/models/({_SLUG})/({_SLUG})(?:/frameworks/({_SLUG})(?:/variations/({_SLUG})"
    r"(?:/versions/(\d+))?)?)?/?$"
)

# The TF Hub handles of the bird classifier and where Kaggle publishes the same files: the
# fallback when the tfhub.dev redirect answers 5xx (as its lite-format path has for other
# models). Other TF Hub handles have no known twin, hence no fallback.
_BIRDS = "/google/aiy/vision/classifier/birds_V1/1"
_BIRDS_LITE = "/google/lite-model/aiy/vision/classifier/birds_V1/"
_KAGGLE_TWINS = {
    _BIRDS: "google/aiy/tensorFlow1/vision-classifier-birds-v1/1",
    **{f"{_BIRDS_LITE}{v}": f"google/aiy/tfLite/vision-classifier-birds-v1/{v}" for v in (1, 2, 3)},
}


@dataclass(frozen=True)
class ModelSource:
    """What to download for a model setting: `url` first, then each of `fallbacks` in turn
    (logged) when the one before answers HTTP 5xx. `handle` is the setting as given; the cache
    is keyed by it."""

    handle: str
    url: str
    fallbacks: tuple[str, ...] = ()
    form: str = "url"


def resolve_source(handle: str, kaggle_url: str = KAGGLE_URL) -> ModelSource:
    """The download plan of `handle` (any accepted form); `ModelError` for a Kaggle handle or
    page that names no version, which would change under a running service."""
    text = handle.strip()
    if "://" not in text:
        return ModelSource(
            handle, kaggle_download_url(_kaggle_handle(text), kaggle_url), (), "kaggle"
        )
    url = URL(text, encoded=True)
    if url.host in TFHUB_HOSTS:
        twin = _KAGGLE_TWINS.get(url.path.rstrip("/"))
        fallback = (kaggle_download_url(twin, kaggle_url),) if twin else ()
        return ModelSource(handle, tfhub_download_url(text), fallback, "tfhub")
    if _is_kaggle_host(url, kaggle_url) and url.path.startswith("/models/"):
        return ModelSource(handle, kaggle_download_url(_page_handle(url), kaggle_url), (), "kaggle")
    return ModelSource(handle, text, (), "url")


def tfhub_download_url(handle: str) -> str:
    """The URL that serves the bytes of a TF Hub `handle`: its format parameter added."""
    url = URL(handle, encoded=True)
    if url.host not in TFHUB_HOSTS or "tf-hub-format" in url.query or "lite-format" in url.query:
        return handle
    if "/lite-model/" in url.path:
        return str(url.update_query({"lite-format": "tflite"}))
    return str(url.update_query({"tf-hub-format": "compressed"}))


def kaggle_download_url(handle: str, kaggle_url: str = KAGGLE_URL) -> str:
    """Kaggle's public download endpoint of a versioned model handle."""
    return f"{kaggle_url.rstrip('/')}/api/v1/models/{handle}/download"


def _kaggle_handle(text: str) -> str:
    match = _HANDLE.match(text)
    if match is None:
        raise ModelError(
            f"model {text!r} is neither a URL nor a Kaggle handle ({KAGGLE_HANDLE_FORM}, e.g. "
            "google/aiy/tfLite/vision-classifier-birds-v1/3)"
        )
    if match.group(5) is None:
        raise ModelError(
            f"Kaggle handle {text!r} names no version: add it ({text}/1), so the model "
            "cannot change under a running service"
        )
    return text


def _page_handle(url: URL) -> str:
    match = _PAGE.match(url.path)
    if match is None or None in match.groups():
        raise ModelError(
            f"{url} is not a versioned Kaggle model page: give {PAGE_FORM} or the handle "
            f"({KAGGLE_HANDLE_FORM})"
        )
    owner, model, framework, variation, version = match.groups()
    # Pages capitalise the framework ("TensorFlow1"); handles spell it in camel case.
    framework = framework[:1].lower() + framework[1:]
    return f"{owner}/{model}/{framework}/{variation}/{version}"


def _is_kaggle_host(url: URL, kaggle_url: str) -> bool:
    base = URL(kaggle_url)
    return url.host in KAGGLE_HOSTS or (url.host == base.host and url.port == base.port)


def describe_forms() -> str:
    """The accepted forms, for error messages."""
    return (
        f"a TF Hub handle, a Kaggle handle ({KAGGLE_HANDLE_FORM}), a versioned Kaggle model "
        "page URL, or a direct .tflite / .tar.gz URL"
    )
