"""What a benchmark scenario is: the runner, the CLI and the summary rely on nothing else."""

from __future__ import annotations

from typing import Any, Protocol

from bench.common import BenchContext


class Scenario(Protocol):
    """A module of bench/scenarios/: its name, its configuration type and how to run it."""

    NAME: str
    # Whether the scenario needs a Kafka broker (the runner starts one when any does).
    NEEDS_KAFKA: bool

    @property
    def Config(self) -> type[Any]: ...

    async def run(self, ctx: BenchContext, config: Any = None) -> dict[str, Any]:
        """Measure; returns the result to save as `<NAME>.json`."""
        ...

    def summary(self, result: dict[str, Any]) -> list[str]:
        """Lines for the terminal summary of a saved result."""
        ...
