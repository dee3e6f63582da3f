"""Loading a served model into a warmed-up classifier with its labels: what the rest of the
service asks of `consumer.model`."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from dataclasses import dataclass

import structlog

from consumer.model.backend import Classifier
from consumer.model.backends import BUILTIN_BACKENDS
from consumer.model.errors import ModelError
from consumer.model.fetch import ModelArtifact, ModelFetcher
from consumer.model.labels import background_class, parse_labels
from consumer.model.outputs import with_probabilities
from consumer.model.registry import Backends
from consumer.native_logs import quiet_native_stderr

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A warmed-up classifier with its labels, ready to serve."""

    name: str
    classifier: Classifier
    labels: list[str]
    fetch_s: float
    load_s: float
    size_bytes: int
    from_cache: bool
    sha256: str = ""
    # The label map's "no bird" class: never ranked among the species, reported on its own.
    background_id: int | None = None


def load_classifier(
    artifact: ModelArtifact, threads: int, backends: Backends = BUILTIN_BACKENDS
) -> Classifier:
    """Load `artifact` with the backend of its kind, then run one warm-up inference, which
    finds whether the model answers probabilities or logits (`consumer.model.outputs`)."""
    start = time.perf_counter()
    with quiet_native_stderr():
        classifier = backends.of_kind(artifact.kind).load(artifact.path, threads)
        loaded_s = time.perf_counter() - start
        classifier = with_probabilities(classifier)
    log.info(
        "model_loaded",
        backend=classifier.backend,
        classes=classifier.num_classes,
        load_s=round(loaded_s, 3),
        warmup_s=round(time.perf_counter() - start - loaded_s, 3),
    )
    return classifier


def check_labels(classifier: Classifier, labels: list[str]) -> None:
    if len(labels) != classifier.num_classes:
        raise ModelError(
            f"label map has {len(labels)} labels but the model has {classifier.num_classes} classes"
        )


async def load_model(
    fetcher: ModelFetcher,
    model_url: str,
    labels_url: str,
    *,
    threads: int,
    pool: Executor,
    sha256: str | None = None,
) -> LoadedModel:
    """Fetch the model and its label map at once and load the model in `pool` (the inference
    thread), checking that the labels fit it; with `sha256`, a model of another digest is
    refused. One attempt: raises `ModelError`.

    The framework the URL suggests is imported in `pool` while the downloads run (TensorFlow
    takes seconds). The backends are the fetcher's.
    """
    backends = fetcher.backends
    loop = asyncio.get_running_loop()
    likely = backends.likely_at(model_url)
    if likely is not None:
        loop.run_in_executor(pool, likely.preload)
    labels_task = asyncio.create_task(fetcher.fetch_labels(labels_url))
    model_task = asyncio.create_task(fetcher.fetch_model(model_url, sha256))
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
    classifier = await loop.run_in_executor(pool, load_classifier, artifact, threads, backends)
    check_labels(classifier, labels)
    log.info(
        "model_identity",
        url=model_url,
        sha256=artifact.sha256,
        backend=classifier.backend,
        kind=artifact.kind,
        classes=classifier.num_classes,
    )
    return LoadedModel(
        name=model_url,
        classifier=classifier,
        labels=labels,
        fetch_s=artifact.fetch_s,
        load_s=time.perf_counter() - start,
        size_bytes=artifact.size_bytes,
        from_cache=artifact.from_cache,
        sha256=artifact.sha256,
        background_id=background_class(labels),
    )
