"""InMemoryTradeLog: the trades and dead-letter topics as lists (TradePublisher, TradeLogTails, IngestDeadLetters)."""

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
    so partitions end unevenly. Timestamps are a counter: a message (or dead letter) written later has a larger one.
    """

    def __init__(self, partitions: int = 4, message_trades: int = 2_000, interrupt_after: int | None = None) -> None:
        self.partitions, self.message_trades = partitions, message_trades
        self.records: list[list[LogRecord]] = [[] for _ in range(partitions)]
        self.dead_letters: list[DeadLetter] = []
        self.dead_letter_stamps: list[int] = []  # each letter's timestamp, on the messages' clock
        self.dead_letter_marks: list[IngestMark | None] = []
        self.interrupt_after = interrupt_after
        self.sent = Sent()
        self.clock = 0

    def partition_of(self, symbol: str) -> int:
        return partition_of(symbol, self.partitions)

    async def publish(self, runs: SymbolRuns, mark: IngestMark | None = None,
                      dead_letters: Sequence[DeadLetter] = ()) -> None:
        """As KafkaTradePublisher: `dead_letters` right after the first message (nothing can come
        between: an interruption is at a message)."""
        messages = []
        if len(runs):
            home = np.array([self.partition_of(n) for n in runs.names], np.int64)[runs.codes]
            home[runs.lengths == 0] = -1
            messages = list(encode_runs(runs, home, self.message_trades))
        for n, (partition, value, trades) in enumerate(messages):
            self.append(partition, value, mark, trades)
            if n == 0:
                await self.publish_dead_letters(dead_letters, mark)
        if not messages:
            await self.publish_dead_letters(dead_letters, mark)

    def append(self, partition: int, value: bytes, mark: IngestMark | None = None, trades: int = 0,
               partitions: int | None = None) -> None:
        if self.interrupt_after is not None and self.sent.messages >= self.interrupt_after:
            raise Interrupted(f"interrupted after {self.sent.messages} messages")
        self.clock += 1
        self.records[partition].append(LogRecord(value, mark, partitions or self.partitions, self.clock))
        self.sent.trades, self.sent.messages = self.sent.trades + trades, self.sent.messages + 1
        self.sent.bytes += len(value)

    async def publish_dead_letters(self, dead_letters: Sequence[DeadLetter], mark: IngestMark | None = None) -> None:
        for letter in dead_letters:
            self.clock += 1
            self.dead_letters.append(letter)
            self.dead_letter_stamps.append(self.clock)
            self.dead_letter_marks.append(mark)
        self.sent.dead_letters += len(dead_letters)

    async def origins(self, source: str) -> set[str]:
        """The IngestDeadLetters port: the origins of the letters an ingest of `source` sent."""
        return {d.origin for d, mark in zip(self.dead_letters, self.dead_letter_marks)
                if mark is not None and mark.source == source}

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
