"""`birdwatch serve`: load and warm the model, start the endpoints, join the group, run."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog

from consumer.config import Settings
from consumer.http import make_app, start_http
from consumer.kafka.service import KafkaService
from consumer.kafka.state import ServiceState
from consumer.metrics import Metrics
from consumer.runtime import Runtime

log = structlog.get_logger(__name__)
T = TypeVar("T")


async def run_serve(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Serve until SIGTERM/SIGINT (or `stop`); returns the exit code. Raises ModelError."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = _install_signal_handlers(loop, stop)
    metrics = Metrics()
    state = ServiceState()

    def alive() -> bool:
        return not state.failed

    metrics.ready.set_function(lambda: 1.0 if state.ready else 0.0)

    runner = await start_http(make_app(metrics, alive, lambda: state.ready), settings.http_port)
    log.info("http_listening", port=settings.http_port)
    try:
        async with Runtime(settings, progress=False) as rt:
            model = await _unless_stopped(
                rt.load_model(on_failure=lambda _: metrics.model_load_failures.inc()), stop
            )
            metrics.model_load_seconds.set(model.fetch_s + model.load_s)
            metrics.set_model(model.name, model.sha256, model.classifier.backend)
            state.model_loaded = True
            service = KafkaService(settings, rt, model, metrics, state)
            try:
                await _unless_stopped(service.start(), stop)
            except _Stopped:
                await service.close()
                raise
            log.info(
                "serving",
                group_id=settings.group_id,
                topic=settings.input_topic,
                results_topic=settings.results_topic,
            )
            await service.run(stop)
    except _Stopped:
        return 0
    except BaseException:
        state.failed = True
        raise
    finally:
        await runner.cleanup()
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0


def _install_signal_handlers(
    loop: asyncio.AbstractEventLoop, stop: asyncio.Event
) -> list[signal.Signals]:
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, _request_stop, stop, sig)
        except (RuntimeError, ValueError):
            # Only the main thread can take signals (e.g. not when embedded in a test thread).
            log.debug("signal_handler_unavailable", signal=sig.name)
            continue
        installed.append(sig)
    return installed


class _Stopped(Exception):
    """A stop was requested before the work it interrupted was done."""


async def _unless_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event) -> T:
    """The result of `work`; raises `_Stopped` (after cancelling it) if `stop` is set first."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait([task, stopper], return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    raise _Stopped


def _request_stop(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("signal_received", signal=sig.name)
    stop.set()
