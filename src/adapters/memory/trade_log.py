"""InMemoryTradeLog: the trades topic as lists, both the TradePublisher and the TradeLogTails ports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adapters.kafka.codec import decode, encode_runs
from adapters.kafka.keys import partition_of
from domain.model import TRADE_DTYPE, DeadLetter
from domain.ports import IngestMark, LogTail, Sent
from domain.symbols import SymbolRuns


class Interrupted(Exception):
    """The ingest was cut off (a crash, Ctrl-C, a broker gone): what was appended stays."""


@dataclass(frozen=True, slots=True)
class LogRecord:
    value: bytes
    mark: IngestMark | None
    partitions: int
    timestamp_ms: int


class InMemoryTradeLog:
    """Partitions of STB2 messages, packed as KafkaTradePublisher packs them, each partition only
    ever appended to in order (as the idempotent producer leaves Kafka's).

    `interrupt_after` messages appended, a publish raises Interrupted: the crash of an ingest.
    `lose_last(partition, n)` drops a partition's newest messages: those a crash left in flight,
    so partitions end unevenly. Timestamps are a counter: a message written later has a larger one.
    """

    def __init__(self, partitions: int = 4, message_trades: int = 2_000, interrupt_after: int | None = None) -> None:
        self.partitions, self.message_trades = partitions, message_trades
        self.records: list[list[LogRecord]] = [[] for _ in range(partitions)]
        self.dead_letters: list[DeadLetter] = []
        self.interrupt_after = interrupt_after
        self.sent = Sent()
        self.clock = 0

    def partition_of(self, symbol: str) -> int:
        return partition_of(symbol, self.partitions)

    async def publish(self, runs: SymbolRuns, mark: IngestMark | None = None) -> None:
        if not len(runs):
            return
        home = np.array([self.partition_of(n) for n in runs.names], np.int64)[runs.codes]
        home[runs.lengths == 0] = -1
        for partition, value, trades in encode_runs(runs, home, self.message_trades):
            self.append(partition, value, mark, trades)

    def append(self, partition: int, value: bytes, mark: IngestMark | None = None, trades: int = 0,
               partitions: int | None = None) -> None:
        if self.interrupt_after is not None and self.sent.messages >= self.interrupt_after:
            raise Interrupted(f"interrupted after {self.sent.messages} messages")
        self.clock += 1
        self.records[partition].append(LogRecord(value, mark, partitions or self.partitions, self.clock))
        self.sent.trades, self.sent.messages = self.sent.trades + trades, self.sent.messages + 1
        self.sent.bytes += len(value)

    async def publish_dead_letters(self, dead_letters: Sequence[DeadLetter]) -> None:
        self.dead_letters.extend(dead_letters)
        self.sent.dead_letters += len(dead_letters)

    async def flush(self) -> None:
        pass

    def lose_last(self, partition: int, messages: int) -> None:
        del self.records[partition][len(self.records[partition]) - messages:]

    async def tails(self) -> list[LogTail]:
        tails = []
        for p, records in enumerate(self.records):
            if not records:
                tails.append(LogTail(p, -1, 0, np.empty(0, TRADE_DTYPE), None, None))
                continue
            last = records[-1]
            trades, letters = decode(None, last.value, f"trades[{p}]@{len(records) - 1}")
            tails.append(LogTail(p, len(records) - 1, last.timestamp_ms, trades if not letters else trades[:0],
                                 last.mark, last.partitions if last.mark is not None else None))
        return tails

    def trades(self, partition: int | None = None) -> np.ndarray:
        """What the log holds (one partition's, or all of them partition after partition), in order."""
        chosen = range(self.partitions) if partition is None else [partition]
        found = [decode(None, r.value, "")[0] for p in chosen for r in self.records[p]]
        return np.concatenate(found) if found else np.empty(0, TRADE_DTYPE)
