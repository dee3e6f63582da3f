"""`ImageFetcher` follows redirects (absolute or relative, up to MAX_REDIRECTS) and refuses
loops, too many hops and malformed locations."""

from __future__ import annotations

import pytest

from consumer.images.fetch import MAX_REDIRECTS
from schemas import ErrorCode
from tests.conftest import LoopbackServer
from tests.consumer.images.fetch_support import BODY, fetching, redirect

# Nothing may dial anything but loopback (see the `dialled` fixture).
pytestmark = pytest.mark.usefixtures("dialled")


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_redirect_is_followed(http_server: LoopbackServer, code: int) -> None:
    http_server.add_bytes("/final.jpg", BODY)
    url = http_server.add_handler("/old", redirect("/final.jpg", code))
    async with fetching() as f:
        assert await f.fetch(url) == BODY
    assert http_server.hits == {"/old": 1, "/final.jpg": 1}


async def test_absolute_and_relative_redirects_chain(http_server: LoopbackServer) -> None:
    http_server.add_bytes("/img/final.jpg", BODY)
    http_server.add_handler("/a", redirect(http_server.url("/img/b"), 301))
    http_server.add_handler("/img/b", redirect("final.jpg", 302))  # relative to /img/
    async with fetching() as f:
        assert await f.fetch(http_server.url("/a")) == BODY
    assert http_server.hits == {"/a": 1, "/img/b": 1, "/img/final.jpg": 1}


def redirect_chain(server: LoopbackServer, hops: int) -> str:
    """/r0 -> /r1 -> ... -> /r{hops-1} -> /final.jpg; returns the first URL."""
    server.add_bytes("/final.jpg", BODY)
    for i in range(hops):
        target = f"/r{i + 1}" if i + 1 < hops else "/final.jpg"
        server.add_handler(f"/r{i}", redirect(target))
    return server.url("/r0")


async def test_five_redirects_are_followed(http_server: LoopbackServer) -> None:
    url = redirect_chain(http_server, MAX_REDIRECTS)
    assert MAX_REDIRECTS == 5
    async with fetching() as f:
        assert await f.fetch(url) == BODY
    assert http_server.hits["/final.jpg"] == 1


async def test_six_redirects_fail(http_server: LoopbackServer) -> None:
    url = redirect_chain(http_server, MAX_REDIRECTS + 1)
    async with fetching() as f:
        error = await f.fail(url, ErrorCode.FETCH_FAILED)
        assert f.retries == 0
    assert "redirects" in error.message
    assert all(http_server.hits[f"/r{i}"] == 1 for i in range(MAX_REDIRECTS + 1))
    assert "/final.jpg" not in http_server.hits


async def test_redirect_loop_fails(http_server: LoopbackServer) -> None:
    url = http_server.add_handler("/loop", redirect("/loop"))
    async with fetching() as f:
        await f.fail(url, ErrorCode.FETCH_FAILED)
    assert http_server.hits["/loop"] == MAX_REDIRECTS + 1


async def test_redirect_to_an_error_reports_the_final_status(http_server: LoopbackServer) -> None:
    url = http_server.add_handler("/moved", redirect("/nowhere"))
    async with fetching() as f:
        error = await f.fail(url, ErrorCode.HTTP_STATUS)
    assert error.message == "HTTP 404"


async def test_malformed_redirect_location_fails(http_server: LoopbackServer) -> None:
    url = http_server.add_handler("/bad", redirect("http://[::1"))
    async with fetching() as f:
        await f.fail(url, ErrorCode.FETCH_FAILED)
        assert f.retries == 0


async def test_redirect_to_an_invalid_host_is_an_image_error(http_server: LoopbackServer) -> None:
    url = http_server.add_handler("/moved", redirect("http://xn--a/bird.jpg"))
    async with fetching() as f:
        await f.fail(url, ErrorCode.BLOCKED_URL)
