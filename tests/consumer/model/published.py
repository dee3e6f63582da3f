"""The bird classifier as it is published today, on the loopback server: tfhub.dev redirecting
to a Kaggle page redirecting to a signed storage URL, Kaggle's download endpoint, the
lite-format path answering 500, and Kaggle's TFLite download being a tar.gz holding the
`.tflite`. Host names resolve to loopback (`LoopbackResolver`) or are all 127.0.0.1."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from tests.conftest import Handler, LoopbackServer
from tests.consumer.model.support import HTML_PAGE, make_tar

# A V4-signed query as storage.googleapis.com hands them out: %40, %2F, %2B and %3D must reach
# the server exactly as sent, or the signature no longer matches.
SIGNED_QUERY = (
    "X-Goog-Algorithm=GOOG4-RSA-SHA256"
    "&X-Goog-Credential=kaggle%40kaggle-models.iam.gserviceaccount.com%2F20261127%2Fauto"
    "%2Fstorage%2Fgoog4_request&X-Goog-Date=20261127T144700Z&X-Goog-Expires=600"
    "&X-Goog-SignedHeaders=host&X-Goog-Signature=9f3a%2Bc0%2F%3D%3D"
)
TFHUB_PATH = "/google/aiy/vision/classifier/birds_V1/1"
TFHUB_LITE_PATH = "/google/lite-model/aiy/vision/classifier/birds_V1/3"
KAGGLE_TF1 = "google/aiy/tensorFlow1/vision-classifier-birds-v1/1"
KAGGLE_LITE = "google/aiy/tfLite/vision-classifier-birds-v1/3"
PAGE_PATH = "/models/google/aiy/frameworks/TensorFlow1/variations/vision-classifier-birds-v1"
LITE_PAGE_PATH = "/models/google/aiy/frameworks/tfLite/variations/vision-classifier-birds-v1"
STORAGE_TF1 = "/kaggle-models/tf1/archive.tar.gz"
STORAGE_LITE = "/kaggle-models/lite/archive.tar.gz"

# Enough for the LiteRT backend to recognise a flatbuffer (the identifier at byte 4).
FAKE_TFLITE = b"\x1c\x00\x00\x00TFL3" + bytes(64)
FAKE_SAVEDMODEL_TARGZ = make_tar([("saved_model.pb", b"graph"), ("variables/variables.index", b"")])


def moved(status: int, location: str) -> web.Response:
    """A redirect whose Location is exactly `location` (aiohttp's HTTPFound would re-quote it)."""
    return web.Response(status=status, headers={"Location": location})


@dataclass
class PublishedModel:
    """The published forms of one model; `signed_queries` are the raw queries storage got."""

    port: int
    tfhub: str
    kaggle: str
    storage: str
    signed_queries: list[str] = field(default_factory=list)

    @property
    def tfhub_handle(self) -> str:
        return f"{self.tfhub}{TFHUB_PATH}"

    @property
    def tfhub_lite_handle(self) -> str:
        return f"{self.tfhub}{TFHUB_LITE_PATH}"

    @property
    def page_url(self) -> str:
        return f"{self.kaggle}{PAGE_PATH}/versions/1"

    @property
    def lite_page_url(self) -> str:
        return f"{self.kaggle}{LITE_PAGE_PATH}/versions/3"


def publish_like_today(
    server: LoopbackServer,
    *,
    savedmodel_targz: bytes = FAKE_SAVEDMODEL_TARGZ,
    tflite: bytes = FAKE_TFLITE,
    named_hosts: bool = True,
    lite_redirect_status: int = 500,
) -> PublishedModel:
    """Serve the model's every published form on `server`. With `named_hosts`, URLs name
    tfhub.dev, www.kaggle.com and storage.googleapis.com (resolve them with
    `LoopbackResolver`); otherwise every URL is on 127.0.0.1."""
    port = int(server.base.rsplit(":", 1)[1])

    def host(name: str) -> str:
        return f"http://{name if named_hosts else '127.0.0.1'}:{port}"

    model = PublishedModel(
        port, host("tfhub.dev"), host("www.kaggle.com"), host("storage.googleapis.com")
    )
    lite_archive = make_tar([("1.tflite", tflite)])

    async def tfhub(request: web.Request) -> web.StreamResponse:
        if request.query.get("tf-hub-format") == "compressed":
            return moved(302, f"{model.page_url}?tfhub-redirect=true")
        if "lite-format" in request.query:
            return web.Response(status=lite_redirect_status, text="Internal Server Error")
        return web.Response(body=HTML_PAGE, content_type="text/html")

    async def page(request: web.Request) -> web.StreamResponse:
        if request.query.get("tfhub-redirect") == "true":
            return moved(303, f"{model.storage}{STORAGE_TF1}?{SIGNED_QUERY}")
        return web.Response(body=HTML_PAGE, content_type="text/html")

    def redirect_to(path: str) -> web.Response:
        return moved(302, f"{model.storage}{path}?{SIGNED_QUERY}")

    def signed(body: bytes) -> Handler:
        async def storage(request: web.Request) -> web.StreamResponse:
            model.signed_queries.append(request.rel_url.raw_query_string)
            if request.rel_url.raw_query_string != SIGNED_QUERY:
                return web.Response(status=403, text="SignatureDoesNotMatch")
            return web.Response(body=body, content_type="application/x-gzip")

        return storage

    async def kaggle_tf1(request: web.Request) -> web.StreamResponse:
        return redirect_to(STORAGE_TF1)

    async def kaggle_lite(request: web.Request) -> web.StreamResponse:
        return redirect_to(STORAGE_LITE)

    server.add_handler(TFHUB_PATH, tfhub)
    server.add_handler(TFHUB_LITE_PATH, tfhub)
    server.add_handler(f"{PAGE_PATH}/versions/1", page)
    server.add_handler(f"{LITE_PAGE_PATH}/versions/3", page)
    server.add_handler(f"/api/v1/models/{KAGGLE_TF1}/download", kaggle_tf1)
    server.add_handler(f"/api/v1/models/{KAGGLE_LITE}/download", kaggle_lite)
    server.add_handler(STORAGE_TF1, signed(savedmodel_targz))
    server.add_handler(STORAGE_LITE, signed(lite_archive))
    return model
