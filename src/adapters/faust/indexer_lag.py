"""The indexer's lag: per topic and partition it owns, the messages not yet in Elasticsearch, and
how long they have waited with none written."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from adapters.kafka.lag import PartitionProgress, WaitingRecords

# topic -> (messages waiting, seconds stalled) per partition owned
Lags = dict[str, tuple[dict[int, int], dict[int, float]]]


class Log(Protocol):
    """What the lag is read from (sequence.LogReader: a consumer of its own, read_committed)."""

    def next_record(self, tp: Any, first: int, before: int) -> Awaitable[int | None]: ...

    def end_offsets(self, tps: Sequence[Any]) -> Awaitable[dict[Any, int]]: ...


class IndexerLag:
    """Knows the last offset written per partition (`written`, once Elasticsearch has acknowledged
    a take) and measures, per topic, the messages after it (`measure`). A partition with nothing
    written by this process yet counts from its committed offset (`committed`; None: never
    committed, so from the log's start), not from where the consumer fetched to: an indexer stuck in
    its first take has fetched past everything it holds."""

    def __init__(self, topics: Iterable[str], log: Log, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.done: dict[str, dict[int, int]] = {topic: {} for topic in topics}
        self.progress = {topic: PartitionProgress(clock) for topic in self.done}
        self.waiting = WaitingRecords(log.next_record)

    def written(self, topic: str, offsets: Iterable[tuple[int, int]]) -> None:
        """(partition, offset) of the messages of a take now in Elasticsearch."""
        done = self.done[topic]
        for partition, offset in offsets:
            done[partition] = max(offset, done.get(partition, -1))

    async def measure(self, owned: Sequence[Any], committed: Callable[[Any], int | None]) -> Lags:
        mine = [tp for tp in owned if tp.topic in self.done]
        ends = await self.log.end_offsets(mine)
        self.waiting.keep(mine)
        out: Lags = {}
        for topic, done in self.done.items():
            tps = [tp for tp in mine if tp.topic == topic and tp in ends]
            for gone in done.keys() - {tp.partition for tp in tps}:
                del done[gone]  # revoked: whoever takes it next starts from its commit
            at = {tp.partition: done.get(tp.partition, (committed(tp) or 0) - 1) for tp in tps}
            lags = {tp.partition: await self.waiting.lag(tp, at[tp.partition], ends[tp]) for tp in tps}
            out[topic] = (lags, self.progress[topic].stalled(lags, at))
        return out
