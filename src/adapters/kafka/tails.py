"""KafkaTradeLogTails: the last committed message of each partition of the trades topic."""

from __future__ import annotations

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from adapters.kafka.codec import decode
from adapters.kafka.errors import said
from adapters.kafka.keys import partition_of
from adapters.kafka.marks import read_mark
from adapters.kafka.reading import last_records, partitions_of
from domain.errors import ResumeError, SourceError
from domain.model import TRADE_DTYPE
from domain.ports import LogTail


class KafkaTradeLogTails:
    """The TradeLogTails port over the trades topic: one read of each partition's last record
    (read_committed: an aborted or open transaction's records are not the log's), nothing before it."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions

    def partition_of(self, symbol: str) -> int:
        return partition_of(symbol, self.partitions)

    async def tails(self) -> list[LogTail]:
        found = await partitions_of(self.bootstrap, self.topic)
        if found != set(range(self.partitions)):
            raise ResumeError(f"{self.topic} has {len(found)} partitions, not the configured {self.partitions}")
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, isolation_level="read_committed",
                                    enable_auto_commit=False, request_timeout_ms=10_000)
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise SourceError(f"Kafka at {self.bootstrap}: {said(exc)}") from None
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            consumer.assign(tps)
            starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
            newest = await last_records(consumer, tps, starts, ends, 1)
        finally:
            await consumer.stop()
        return [self._tail(tp.partition, newest[tp][-1] if newest[tp] else None) for tp in tps]

    def _tail(self, partition: int, record: ConsumerRecord | None) -> LogTail:
        if record is None:
            return LogTail(partition, -1, 0, np.empty(0, TRADE_DTYPE), None, None)
        where = f"{self.topic}[{partition}]@{record.offset}"
        try:
            marked = read_mark(record.headers)
        except ValueError as exc:
            raise ResumeError(f"{where}: {exc}") from None
        trades, letters = decode(record.key, record.value, where)
        if letters:
            trades = np.empty(0, TRADE_DTYPE)
        mark, written_for = marked if marked is not None else (None, None)
        return LogTail(partition, record.offset, record.timestamp, trades, mark, written_for)
