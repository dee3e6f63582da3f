"""Health, readiness and metrics endpoints (aiohttp) for Kubernetes probes and Prometheus."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from consumer.metrics import Metrics

HEALTH_PATH, READY_PATH, METRICS_PATH = "/healthz", "/readyz", "/metrics"


def make_app(
    metrics: Metrics, alive: Callable[[], bool], ready: Callable[[], bool]
) -> web.Application:
    """`alive`: the event loop and the service loop run; `ready`: model loaded and in the group."""

    async def healthz(_: web.Request) -> web.Response:
        ok = alive()
        return web.json_response({"status": "ok" if ok else "dead"}, status=200 if ok else 503)

    async def readyz(_: web.Request) -> web.Response:
        ok = ready()
        return web.json_response(
            {"status": "ready" if ok else "not_ready"}, status=200 if ok else 503
        )

    async def metrics_handler(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get(HEALTH_PATH, healthz)
    app.router.add_get(READY_PATH, readyz)
    app.router.add_get(METRICS_PATH, metrics_handler)
    return app


async def start_http(app: web.Application, port: int, host: str = "0.0.0.0") -> web.AppRunner:  # noqa: S104
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
