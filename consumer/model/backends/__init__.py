"""The backends this build loads models with, asked in this order.

Adding one: a module here with a class following `consumer.model.backend.Backend` (importing
its framework lazily) and one line in `BUILTIN_BACKENDS` (CONTRIBUTING.md, "a backend").
"""

from consumer.model.backends.litert import LiteRTBackend
from consumer.model.backends.tensorflow import TensorFlowBackend
from consumer.model.registry import Backends

BUILTIN_BACKENDS = Backends(
    [
        LiteRTBackend(),
        TensorFlowBackend(),  # last: it takes every URL the others do not claim for a preload
    ]
)

__all__ = ["BUILTIN_BACKENDS", "LiteRTBackend", "TensorFlowBackend"]
