"""Wiring shared by every command: sessions, thread pools and the model, made from `Settings`."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

import aiohttp
import stamina
import structlog

from consumer.config import Settings
from consumer.images import FetchPolicy, ImageDecoder, ImageFetcher, make_image_session
from consumer.model import LoadedModel, ModelError, ModelFetcher, load_model
from consumer.model.download import make_model_session
from consumer.pipeline import Pipeline, PipelineConfig, Sink, StageObserver

log = structlog.get_logger(__name__)

LOCAL_COPY_HINT = (
    "to use a local copy, serve the model and label map (e.g. python3 -m http.server) and set "
    "BIRDWATCH_MODEL_URL and BIRDWATCH_LABELS_URL to their URLs (README: Try it offline)"
)


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, ModelError) and exc.retryable


class Runtime:
    """Owns the long-lived resources; use as `async with Runtime(settings) as rt`.

    A `one_shot` runtime (the classify command) fails fast: it retries the model for at most
    `classify_model_retry_s` and falls back to a temporary folder when the model cache cannot
    be written. A service's runtime retries until `model_load_timeout_s`, and a cache it cannot
    write is an error.
    """

    def __init__(
        self, settings: Settings, progress: bool | None = None, one_shot: bool = False
    ) -> None:
        self.settings = settings
        self._progress = sys.stderr.isatty() if progress is None else progress
        self._one_shot = one_shot
        self.decode_pool = ThreadPoolExecutor(settings.decode_threads, "decode")
        # One inference thread: the backend parallelises each call with its own threads.
        self.inference_pool = ThreadPoolExecutor(1, "inference")
        self.model_session: aiohttp.ClientSession | None = None
        self.image_session: aiohttp.ClientSession | None = None
        self.fetcher: ImageFetcher | None = None
        self.model_fetcher: ModelFetcher | None = None

    async def __aenter__(self) -> Runtime:
        s = self.settings
        policy = FetchPolicy(
            timeout_s=s.fetch_timeout_s,
            connect_timeout_s=min(5.0, s.fetch_timeout_s),
            retries=s.fetch_retries,
            deadline_s=s.fetch_deadline_s,
            max_bytes=s.max_image_bytes,
            allow_private=s.allow_private_networks,
        )
        self.image_session = make_image_session(policy, s.fetch_concurrency)
        self.fetcher = ImageFetcher(
            self.image_session, policy, s.fetch_concurrency, s.fetch_per_host_limit
        )
        self.model_session = make_model_session()
        try:
            self.model_fetcher = ModelFetcher(
                self.model_session,
                s.cache_path,
                self._progress,
                temporary_fallback=self._one_shot,
                kaggle_url=s.kaggle_url,
            )
        except BaseException as exc:  # e.g. no temporary folder: close what is open
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for session in (self.image_session, self.model_session):
            if session is not None:
                await session.close()
        if self.model_fetcher is not None:
            self.model_fetcher.close()
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
        self.inference_pool.shutdown(wait=False, cancel_futures=True)

    async def load_model(
        self, on_failure: Callable[[ModelError], None] | None = None
    ) -> LoadedModel:
        """Fetch and load the model and labels, retrying transient failures with backoff;
        raises `ModelError` with a one-line reason (what was tried, for how long, and how to
        use a local copy when the network is the problem). `on_failure` hears of every failed
        attempt (e.g. to count it)."""
        s = self.settings
        loop = asyncio.get_running_loop()
        started = loop.time()
        retry_for = s.model_load_timeout_s
        if self._one_shot:
            retry_for = min(retry_for, s.classify_model_retry_s)
        failures: list[ModelError] = []
        try:
            async with asyncio.timeout(s.model_load_timeout_s):
                return await self._load_with_retries(retry_for, failures, on_failure)
        except TimeoutError:
            last = f"; last failure: {failures[-1]}" if failures else ""
            raise ModelError(
                f"model not loaded within {s.model_load_timeout_s:g} s "
                f"(BIRDWATCH_MODEL_LOAD_TIMEOUT_S){last}; {LOCAL_COPY_HINT}",
                retryable=True,
            ) from None
        except ModelError as exc:
            if not exc.retryable:
                raise
            took = loop.time() - started
            raise ModelError(
                f"{exc}; gave up after {len(failures)} attempt(s) in {took:.0f} s; "
                f"{LOCAL_COPY_HINT}",
                retryable=True,
            ) from None

    async def _load_with_retries(
        self,
        retry_for: float,
        failures: list[ModelError],
        on_failure: Callable[[ModelError], None] | None,
    ) -> LoadedModel:
        # The one retry policy of model loading: 0.5 s doubling to 30 s, plus up to 0.5 s of
        # jitter, for `retry_for` seconds (stamina.set_testing removes the waits).
        s, fetcher = self.settings, self.model_fetcher
        assert fetcher is not None
        loop = asyncio.get_running_loop()
        failed_at = 0.0
        async for attempt in stamina.retry_context(
            on=_retryable,
            attempts=None,
            timeout=retry_for,
            wait_initial=0.5,
            wait_max=30.0,
            wait_jitter=0.5,
            wait_exp_base=2,
        ):
            with attempt:
                if failures:
                    log.warning(
                        "model_load_retry",
                        attempt=attempt.num,
                        waited_s=round(loop.time() - failed_at, 2),
                        reason=str(failures[-1]),
                    )
                try:
                    return await load_model(
                        fetcher,
                        s.model_url,
                        s.labels_url,
                        threads=s.inference_threads,
                        pool=self.inference_pool,
                        sha256=s.model_sha256,
                    )
                except ModelError as exc:
                    failures.append(exc)
                    failed_at = loop.time()
                    if on_failure is not None:
                        on_failure(exc)
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    def pipeline(
        self,
        model: asyncio.Future[LoadedModel] | asyncio.Task[LoadedModel],
        sink: Sink,
        observer: StageObserver | None = None,
    ) -> Pipeline:
        assert self.fetcher is not None
        s = self.settings

        async def model_source() -> LoadedModel:
            return await model

        return Pipeline(
            fetcher=self.fetcher,
            decode=ImageDecoder(s.max_image_pixels),
            model=model_source,
            sink=sink,
            decode_pool=self.decode_pool,
            inference_pool=self.inference_pool,
            config=PipelineConfig(
                model_name=s.model_url,
                max_batch_size=s.max_batch_size,
                max_batch_delay_s=s.max_batch_delay_ms / 1000,
                max_undecoded=s.fetch_concurrency,
                max_undecoded_per_host=s.fetch_per_host_limit,
                decode_budget_bytes=s.decode_memory_bytes,
            ),
            observer=observer,
        )
