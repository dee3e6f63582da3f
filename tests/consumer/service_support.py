"""What the service tests against the real broker set up again and again.

A test asks the `service_setup` fixture (tests/consumer/conftest.py) for its own topics and
group, with the tiny model on the loopback server; the `ServiceSetup` it gets back builds the
settings, produces events and reads the results (committed or not) for those names. The other
helpers make red test images and event ids, and read a member's progress.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from consumer.config import Settings
from consumer.testing.topics import (
    TopicReader,
    Topics,
    create_topics,
    produce_events,
    read_topic,
    results_of,
)
from consumer.testing.waiting import wait_until
from tests.conftest import LoopbackServer, TinyModels
from tests.images import RED, solid_jpeg
from tests.kafka_support import ServeProcess, serve_env, serve_model

SettingsFactory = Callable[..., Settings]
Result = dict[str, Any]


def red_image(server: LoopbackServer, path: str = "/img/red.jpg", delay_s: float = 0.0) -> str:
    """A small red JPEG on the loopback server (answered after `delay_s`); returns its URL."""
    return server.add_bytes(path, solid_jpeg(RED, (64, 48)), "image/jpeg", delay_s=delay_s)


def new_ids(prefix: str, count: int) -> list[str]:
    """`count` event ids, unique to this run."""
    return [f"{prefix}-{i}-{uuid.uuid4().hex[:8]}" for i in range(count)]


@dataclass
class ServiceSetup:
    """One test's topics and group on a broker, and the tiny model on the loopback server."""

    bootstrap: str
    names: Topics
    model: dict[str, str]
    make_settings: SettingsFactory

    def settings(self, **overrides: object) -> Settings:
        """Settings for a member of this test's group; `overrides` win."""
        values = {**self.model, **self.names.settings(), **overrides}
        return self.make_settings(kafka_bootstrap_servers=self.bootstrap, **values)

    def serve_env(self, **overrides: object) -> dict[str, str]:
        """The same for `birdwatch serve` in a child process (see `ServeProcess`)."""
        return serve_env(self.bootstrap, self.names, self.model, **overrides)

    async def produce(
        self, ids: Iterable[str], url: str | Sequence[str], partitions: Sequence[int] = ()
    ) -> int:
        """One event per id on the input topic; with several URLs, the ids take turns."""
        urls = [url] if isinstance(url, str) else url
        events = ((eid, urls[i % len(urls)]) for i, eid in enumerate(ids))
        return await self.produce_events(events, partitions)

    async def produce_events(
        self, events: Iterable[tuple[str, str]], partitions: Sequence[int] = ()
    ) -> int:
        """One event per (id, url) on the input topic."""
        return await produce_events(self.bootstrap, self.names.input, events, partitions)

    async def wait_for_results(
        self, ids: Iterable[str], timeout_s: float, isolation: str = "read_uncommitted"
    ) -> None:
        """Read the results topic until every id in `ids` has a result."""
        async with TopicReader(self.bootstrap, self.names.results, isolation) as reader:
            await reader.wait_for_ids(set(ids), timeout_s=timeout_s)

    async def results(self, isolation: str = "read_uncommitted") -> list[Result]:
        """Every result on the results topic so far."""
        return results_of(await read_topic(self.bootstrap, self.names.results, isolation))

    # Transactions (exactly-once): records written to the results topic but not yet committed
    # lie below its high watermark and above its last stable offset.

    @contextlib.asynccontextmanager
    async def _results_readers(self) -> AsyncIterator[tuple[TopicReader, TopicReader]]:
        """Two readers of the results topic: of committed records only, of every one written."""
        async with (
            TopicReader(self.bootstrap, self.names.results, "read_committed") as committed,
            TopicReader(self.bootstrap, self.names.results) as written,
        ):
            yield committed, written

    async def transaction_open(self, within_s: float = 5.0, step: float = 0.02) -> bool:
        """Wait (at most `within_s`) until a transaction on the results topic is open; whether
        one was."""
        async with self._results_readers() as (committed, written):

            async def is_open() -> bool:
                return await committed.end_offsets() != await written.end_offsets()

            try:
                await wait_until(is_open, within_s, "an open transaction", step=step)
            except TimeoutError:
                return False
            return True

    async def settled_results(self) -> tuple[list[Result], list[Result]]:
        """(read_committed results, all results written) once no transaction is left open."""
        async with self._results_readers() as (committed, written):

            async def settled() -> bool:
                return await committed.end_offsets() == await written.end_offsets()

            # Dead transactions are aborted after transaction_timeout_ms plus the broker's check
            # interval (10 s by default).
            await wait_until(settled, 60, "every open transaction to be resolved", step=0.5)
            visible = results_of(await committed.read_to_end())
            return visible, results_of(await written.read_to_end())


class ServiceSetupFactory(Protocol):
    async def __call__(self, prefix: str, partitions: int | None = None) -> ServiceSetup: ...


async def set_up_service(
    bootstrap: str,
    server: LoopbackServer,
    models: TinyModels,
    make_settings: SettingsFactory,
    prefix: str,
    partitions: int | None = None,
) -> ServiceSetup:
    """Fresh names (and, given `partitions`, their topics) and the tiny model on `server`."""
    names = Topics.unique(prefix)
    if partitions is not None:
        await create_topics(bootstrap, names.names, partitions)
    return ServiceSetup(bootstrap, names, serve_model(server, models), make_settings)


# --- members ---------------------------------------------------------------------------------


async def ok_at_least(process: ServeProcess, count: float) -> bool:
    """Whether the member in `process` has produced `count` ok results."""
    return await process.metric("birdwatch_results_produced_total", status="ok") >= count
