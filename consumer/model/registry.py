"""`Backends`: the backends a process may load models with, asked in order."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from consumer.model.backend import Backend
from consumer.model.errors import ModelError


class Backends:
    """An ordered set of backends: the first to recognise what was served loads it.

    Order matters only where backends overlap: in content (none of the built-in ones do) and
    in `likely_at` guesses (the TensorFlow backend, which guesses any URL, comes last).
    """

    def __init__(self, backends: Iterable[Backend]) -> None:
        self._backends = tuple(backends)
        if not self._backends:
            raise ValueError("no backends")
        for attribute in ("name", "kind"):
            values = [getattr(b, attribute) for b in self._backends]
            if len(set(values)) != len(values):
                raise ValueError(f"two backends share a {attribute}: {values}")

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._backends)

    def plus(self, backend: Backend) -> Backends:
        """These backends with `backend` asked first."""
        return Backends((backend, *self._backends))

    def recognise(self, served: Path) -> tuple[Backend, Path] | None:
        """The first backend that loads something within `served`, and what it loads."""
        for backend in self._backends:
            found = backend.find(served)
            if found is not None:
                return backend, found
        return None

    def of_kind(self, kind: str) -> Backend:
        """The backend loading models of `kind` (as recorded in the cache)."""
        for backend in self._backends:
            if backend.kind == kind:
                return backend
        raise ModelError(f"no backend loads {kind!r} models (known: {self.kinds()})")

    def named(self, name: str) -> Backend:
        for backend in self._backends:
            if backend.name == name:
                return backend
        raise ModelError(f"no backend is named {name!r}")

    def likely_at(self, url: str) -> Backend | None:
        """The backend that probably loads what `url` serves, from the URL alone."""
        return next((b for b in self._backends if b.likely_at(url)), None)

    def kinds(self) -> list[str]:
        return [b.kind for b in self._backends]

    def describe_served(self) -> str:
        """What these backends recognise when served: "neither A nor B"."""
        return _neither([b.serves for b in self._backends])

    def archive_members(self) -> list[str]:
        """What these backends look for inside an unpacked archive."""
        return [b.archive_member for b in self._backends if b.archive_member]


def _neither(things: list[str]) -> str:
    if len(things) == 1:
        return f"not {things[0]}"
    return "neither " + " nor ".join(things)
