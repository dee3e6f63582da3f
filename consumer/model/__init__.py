"""Fetching, caching and running the bird classifier; knows nothing of Kafka or HTTP servers.

What the rest of the service uses is exported here; backends are plug-ins
(`consumer/model/backends/`).
"""

from consumer.model.backend import Backend, Classifier, species_only, top_k
from consumer.model.backends import BUILTIN_BACKENDS
from consumer.model.errors import ModelError
from consumer.model.fetch import ModelArtifact, ModelFetcher
from consumer.model.loading import LoadedModel, check_labels, load_classifier, load_model
from consumer.model.registry import Backends

__all__ = [
    "BUILTIN_BACKENDS",
    "Backend",
    "Backends",
    "Classifier",
    "LoadedModel",
    "ModelArtifact",
    "ModelError",
    "ModelFetcher",
    "check_labels",
    "load_classifier",
    "load_model",
    "species_only",
    "top_k",
]
