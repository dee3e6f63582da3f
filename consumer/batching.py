"""The micro-batcher's state, kept pure so time-based behaviour is testable without sleeping."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    """Collects items into a batch that closes at `max_size` items or `max_delay_s` after its
    first item, whichever comes first (a deadline from the first item bounds latency; an idle
    timeout that resets on every item would not)."""

    def __init__(self, max_size: int, max_delay_s: float) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.max_delay_s = max_delay_s
        self.items: list[T] = []
        self.deadline: float | None = None

    def add(self, item: T, now: float) -> None:
        if not self.items:
            self.deadline = now + self.max_delay_s
        self.items.append(item)

    @property
    def full(self) -> bool:
        return len(self.items) >= self.max_size

    def due(self, now: float) -> bool:
        """True when the batch must close now."""
        return bool(self.items) and (
            self.full or (self.deadline is not None and now >= self.deadline)
        )

    def time_left(self, now: float) -> float | None:
        """Seconds until the deadline, None when the batch is empty."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - now)

    def take(self) -> list[T]:
        batch, self.items, self.deadline = self.items, [], None
        return batch
