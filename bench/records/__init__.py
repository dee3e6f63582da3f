"""Typed records the scenarios write and the runner, report, plots and targets read back.

A scenario's JSON file is the record's `to_json()`; readers rebuild the record with
`from_json` (pydantic validates the nested dataclasses), so a misspelt key is a type error or
a validation error, not a silent KeyError far away. One module per family of scenarios.
"""

from bench.records.base import (
    Figure,
    Link,
    Machine,
    Range,
    RunInfo,
    from_json,
    scaled,
    to_json,
)
from bench.records.cold import ColdRatios, CriticalPath, cold_ratios, limits_critical_paths
from bench.records.memory import MemoryResult, MemoryVariant
from bench.records.scaleout import ConsumerShare, ScaleCount, ScaleoutResult, ScaleRun
from bench.records.stream import (
    Ceiling,
    Latency,
    Phase,
    SizeFigures,
    StreamVariant,
    stream_variants,
)

__all__ = [
    "Ceiling",
    "ColdRatios",
    "ConsumerShare",
    "CriticalPath",
    "Figure",
    "Latency",
    "Link",
    "Machine",
    "MemoryResult",
    "MemoryVariant",
    "Phase",
    "Range",
    "RunInfo",
    "ScaleCount",
    "ScaleRun",
    "ScaleoutResult",
    "SizeFigures",
    "StreamVariant",
    "cold_ratios",
    "from_json",
    "limits_critical_paths",
    "scaled",
    "stream_variants",
    "to_json",
]
