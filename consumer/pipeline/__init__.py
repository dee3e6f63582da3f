"""The core: events in, results out.

Each submitted event is fetched (asyncio, a fair share of the slots per host) and decoded
(decode thread pool) on its own (`preparation.py`); a decode starts once its estimated memory
fits the decode budget. Decoded images are micro-batched and classified (inference thread)
while the next images download and decode, so the stages overlap (`core.py`). Every submitted
item ends in exactly one result passed to the sink, whatever fails. Transports (the CLI, the
Kafka service) only submit and sink; what they and the stages exchange is in `work.py`.
"""

from consumer.pipeline.core import Pipeline
from consumer.pipeline.work import (
    Decoder,
    Fetcher,
    ModelSource,
    OpenedImage,
    PipelineConfig,
    Sink,
    StageObserver,
    WorkItem,
)

__all__ = [
    "Decoder",
    "Fetcher",
    "ModelSource",
    "OpenedImage",
    "Pipeline",
    "PipelineConfig",
    "Sink",
    "StageObserver",
    "WorkItem",
]
