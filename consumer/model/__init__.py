"""Fetching, caching and running the bird classifier; knows nothing of Kafka or HTTP servers."""

from consumer.model.backend import Classifier, LoadedModel, load_classifier, top_k
from consumer.model.errors import ModelError
from consumer.model.fetch import ModelArtifact, ModelFetcher

__all__ = [
    "Classifier",
    "LoadedModel",
    "ModelArtifact",
    "ModelError",
    "ModelFetcher",
    "load_classifier",
    "top_k",
]
