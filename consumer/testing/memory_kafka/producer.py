"""`MemoryProducer`: writes to `MemoryKafka` (the `Producer` protocol), transactions included."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import IllegalOperation, KafkaError, ProducerFenced
from aiokafka.structs import OffsetAndMetadata, RecordMetadata

from consumer.testing.memory_kafka.cluster import MemoryKafka, Transaction


class MemoryProducer:
    """Takes aiokafka's keyword arguments; `transactional_id` makes it transactional. Record
    futures resolve when the record is written, unless the cluster holds acks back."""

    def __init__(self, kafka: MemoryKafka, **options: Any) -> None:
        self.kafka = kafka
        self.options = options
        self.transactional_id: str | None = options.get("transactional_id")
        self._epoch = 0
        self._txn: Transaction | None = None
        self.started = False
        self.stopped = False
        self.sent = 0  # send calls, failed ones included

    async def start(self) -> None:
        if self.transactional_id is not None:
            self._epoch = self.kafka.init_producer(self.transactional_id)
        self.started = True

    async def stop(self) -> None:
        self.stopped = True
        self.kafka.journal.record("producer.stop")

    @property
    def fenced(self) -> bool:
        tid = self.transactional_id
        return tid is not None and not self.kafka.is_current(tid, self._epoch)

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        *,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        if not self.started or self.stopped:
            raise KafkaError("the producer is not running")
        if self.transactional_id is not None and self._txn is None:
            raise IllegalOperation("a transactional producer sends only inside a transaction")
        self.sent += 1
        self.kafka.send_attempts += 1
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fault = ProducerFenced() if self.fenced else self.kafka.next_fault("send")
        if fault is not None:
            ack.set_exception(fault)
            return ack

        txn = self._txn

        def write() -> None:
            if ack.done():
                return
            tp, offset = self.kafka.append(
                topic, value, key, partition=partition, headers=headers, txn=txn
            )
            if txn is not None:
                txn.records.append((tp, offset))
            ack.set_result(RecordMetadata(topic, tp.partition, tp, offset, None, 0, 0))

        if txn is None:
            self.kafka.when_acked(write)
        else:
            write()  # a transaction's records are written before its commit
        return ack

    async def partitions_for(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.kafka.partitions(topic)}

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Commit on a clean exit, abort on an error; a fenced producer or an injected fault
        fails the commit (the transaction is then aborted)."""
        if self.transactional_id is None:
            raise IllegalOperation("not a transactional producer")
        if self._txn is not None:
            raise IllegalOperation("a transaction is already open")
        # Beginning is local in Kafka: a fenced producer learns it at its first send or commit.
        txn = self._txn = self.kafka.begin_transaction(self.transactional_id)
        try:
            yield
            fault = ProducerFenced() if self.fenced else self.kafka.next_fault("txn")
            if fault is not None:
                raise fault
        except BaseException:
            if txn.state == "open":
                self.kafka.end_transaction(txn, commit=False)
            raise
        finally:
            self._txn = None
        self.kafka.end_transaction(txn, commit=True)

    async def send_offsets_to_transaction(
        self, offsets: dict[TopicPartition, OffsetAndMetadata], group_id: str
    ) -> None:
        if self._txn is None:
            raise IllegalOperation("no open transaction")
        if self.fenced:
            raise ProducerFenced()
        plain = {tp: meta.offset for tp, meta in offsets.items()}
        self.kafka.journal.record("transaction.offsets", plain)
        self._txn.group_id = group_id
        self._txn.offsets.update(plain)
