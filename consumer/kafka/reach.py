"""Starting the client of a one-shot Kafka command (`publish`, `results`, `topics create`): within
a bounded time, always closed again, and a broker that cannot be reached said in one line.

`serve` is different: it retries without end while the broker is away (consumer/kafka/
service.py), since an orchestrator would only restart it to do the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Protocol, TypeVar

from aiokafka.errors import KafkaError

from consumer.kafka.produce_errors import describe

# Exit status of a Kafka command whose broker cannot be reached (or refuses the command);
# distinct from 1, "some inputs failed". consumer/cli.py documents every status.
EXIT_KAFKA_UNAVAILABLE = 3
# Connection refused and unknown hosts fail at once; this bounds a host that never answers.
CONNECT_TIMEOUT_S = 15.0


class _Client(Protocol):
    async def start(self) -> None: ...


C = TypeVar("C", bound=_Client)


class KafkaUnreachableError(Exception):
    """No broker of `servers` answered; the message is one line with what to do."""

    def __init__(self, servers: str, reason: str) -> None:
        super().__init__(
            f"cannot reach Kafka at {servers} ({reason}). Start a local broker with "
            "`scripts/kafka start`, or point BIRDWATCH_KAFKA_BOOTSTRAP_SERVERS at yours."
        )
        self.servers = servers


@contextlib.asynccontextmanager
async def started(client: C, servers: str) -> AsyncIterator[C]:
    """`client` started (within `CONNECT_TIMEOUT_S`) and closed again whatever happens, so that
    no "Unclosed AIOKafka..." error follows a failure. Raises `KafkaUnreachableError`."""
    try:
        with _connection_errors() as seen:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await client.start()
    except (KafkaError, OSError, TimeoutError) as exc:
        await _close(client)
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {CONNECT_TIMEOUT_S:g} s"
        else:
            reason = seen[-1] if seen else describe(exc)
        raise KafkaUnreachableError(servers, reason) from None
    except BaseException:
        await _close(client)
        raise
    try:
        yield client
    finally:
        await _close(client)


async def _close(client: object) -> None:
    # Producers and consumers stop(); the admin client close()s. Both are safe after a failed
    # start; a failure to close must not hide the error being reported.
    close = getattr(client, "stop", None) or getattr(client, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(" ".join(record.getMessage().split())[:300])


@contextlib.contextmanager
def _connection_errors() -> Iterator[list[str]]:
    """aiokafka's lines while connecting (it logs each failed connection at ERROR), kept for
    the one line that reports them instead of being written; at DEBUG they are written too."""
    logger = logging.getLogger("aiokafka")
    collect = _Collect()
    quiet = logger.getEffectiveLevel() > logging.DEBUG
    propagate = logger.propagate
    logger.addHandler(collect)
    if quiet:
        logger.propagate = False
    try:
        yield collect.messages
    finally:
        logger.removeHandler(collect)
        logger.propagate = propagate
