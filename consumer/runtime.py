"""Wiring shared by every command: sessions, thread pools and the model, made from `Settings`."""

from __future__ import annotations

import asyncio
import functools
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

import aiohttp
import structlog

from consumer.config import Settings
from consumer.images import FetchPolicy, ImageFetcher, decode_image, make_image_session
from consumer.model import LoadedModel, ModelError, ModelFetcher, load_classifier
from consumer.model.backend import check_labels
from consumer.model.fetch import likely_tflite
from consumer.model.labels import parse_labels
from consumer.model.tf_backend import preload_tensorflow
from consumer.pipeline import Pipeline, PipelineConfig, Sink, StageObserver

log = structlog.get_logger(__name__)

MODEL_USER_AGENT = "birdwatch/0.1 (model fetch)"


class Runtime:
    """Owns the long-lived resources; use as `async with Runtime(settings) as rt`."""

    def __init__(self, settings: Settings, progress: bool | None = None) -> None:
        self.settings = settings
        self._progress = sys.stderr.isatty() if progress is None else progress
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
            max_bytes=s.max_image_bytes,
            allow_private=s.allow_private_networks,
        )
        self.image_session = make_image_session(policy, s.fetch_concurrency)
        self.fetcher = ImageFetcher(self.image_session, policy, s.fetch_concurrency)
        self.model_session = aiohttp.ClientSession(
            headers={"User-Agent": MODEL_USER_AGENT},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=60),
        )
        self.model_fetcher = ModelFetcher(self.model_session, s.cache_path, self._progress)
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

    async def load_model(self) -> LoadedModel:
        """Fetch and load the model and labels, retrying transient failures with backoff
        until `model_load_timeout_s`; raises `ModelError` with a one-line reason."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.model_load_timeout_s
        attempt = 0
        while True:
            attempt += 1
            try:
                async with asyncio.timeout_at(deadline):
                    return await self._load_once()
            except TimeoutError:
                raise ModelError(
                    f"model not loaded within {self.settings.model_load_timeout_s:g} s "
                    f"(BIRDWATCH_MODEL_LOAD_TIMEOUT_S)"
                ) from None
            except ModelError as exc:
                delay = min(30.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)  # noqa: S311
                if not exc.retryable or loop.time() + delay >= deadline:
                    raise
                log.warning(
                    "model_load_retry", attempt=attempt, retry_in_s=round(delay, 2), reason=str(exc)
                )
                await asyncio.sleep(delay)

    async def _load_once(self) -> LoadedModel:
        assert self.model_fetcher is not None
        s = self.settings
        loop = asyncio.get_running_loop()
        if not likely_tflite(s.model_url):
            # Import TensorFlow (seconds) in the inference thread while the model downloads.
            loop.run_in_executor(self.inference_pool, preload_tensorflow)
        labels_task = asyncio.create_task(self.model_fetcher.fetch_labels(s.labels_url))
        model_task = asyncio.create_task(self.model_fetcher.fetch_model(s.model_url))
        try:
            label_bytes, artifact = await asyncio.gather(labels_task, model_task)
        except BaseException:
            # gather cancels nothing: stop the sibling so a retry never downloads twice at once.
            for task in (labels_task, model_task):
                task.cancel()
            await asyncio.gather(labels_task, model_task, return_exceptions=True)
            raise
        labels = parse_labels(label_bytes)
        start = time.perf_counter()
        classifier = await loop.run_in_executor(
            self.inference_pool, load_classifier, artifact, s.inference_threads
        )
        check_labels(classifier, labels)
        return LoadedModel(
            name=s.model_url,
            classifier=classifier,
            labels=labels,
            fetch_s=artifact.fetch_s,
            load_s=time.perf_counter() - start,
            size_bytes=artifact.size_bytes,
            from_cache=artifact.from_cache,
        )

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
            decode=functools.partial(decode_image, max_pixels=s.max_image_pixels),
            model=model_source,
            sink=sink,
            decode_pool=self.decode_pool,
            inference_pool=self.inference_pool,
            config=PipelineConfig(
                model_name=s.model_url,
                max_batch_size=s.max_batch_size,
                max_batch_delay_s=s.max_batch_delay_ms / 1000,
                max_undecoded=s.fetch_concurrency,
            ),
            observer=observer,
        )
