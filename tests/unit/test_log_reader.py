"""The log reader that tells a jump in the offsets (commit markers, aborted records) from a skipped
record: what one fetch tells is remembered, and only a record there is read again."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from adapters.faust.sequence import InSequence, LogReader
from adapters.kafka.read_spans import READ_ON_AT_MOST

ANOMALIES = SimpleNamespace(topic="anomalies", partition=0)


class _UnreachableThenBack:
    """A reader's consumer, as aiokafka's behaves: its broker answers nothing for `silent` polls, then
    serves `log` (the offsets holding records; every other offset below `end` is a commit marker or
    an aborted record). A fetch returns up to `fetch` records from the position and moves it past
    them and, when it got to the last, past the markers up to `end`. An assignment forgets every
    position; a paused partition is not fetched. Every partition holds the same log."""

    def __init__(self, silent: int, log: list[int], end: int | None = None, fetch: int = 10_000) -> None:
        self.silent, self.log, self.fetch = silent, log, fetch
        self.end = max(log, default=-1) + 1 if end is None else end
        self.at: dict[Any, int] = {}
        self.assigned: list[Any] = []
        self.paused: set[Any] = set()
        self.seeks: list[tuple[int, int]] = []  # (partition, offset)
        self.fetches = 0  # polls the broker answered

    def assign(self, partitions: list[Any]) -> None:
        self.assigned, self.at, self.paused = list(partitions), {}, set()

    def pause(self, *partitions: Any) -> None:
        self.paused.update(partitions)

    def resume(self, *partitions: Any) -> None:
        self.paused.difference_update(partitions)

    def seek(self, partition: Any, offset: int) -> None:
        assert partition in self.assigned
        self.at[partition] = offset
        self.seeks.append((partition.partition, offset))

    async def getmany(self, partition: Any, timeout_ms: int, max_records: int | None = None) -> dict[Any, list[Any]]:
        await asyncio.sleep(0)
        if partition in self.paused:
            return {}
        if self.silent > 0:
            self.silent -= 1
            return {}
        self.fetches += 1
        at = self.at[partition]  # a KeyError: read without a position (assigned and never sought)
        got = [o for o in sorted(self.log) if at <= o < self.end][:self.fetch]
        more = [o for o in self.log if at <= o < self.end and o not in got]
        self.at[partition] = got[-1] + 1 if more else max(at, self.end)
        return {partition: [SimpleNamespace(offset=o) for o in got]} if got else {}

    async def position(self, partition: Any) -> int:
        return self.at[partition]


def reader_of(consumer: _UnreachableThenBack, patience: float = 5.0) -> LogReader:
    reader = LogReader("unused:9092", read_committed=True, patience=patience, poll=0.0)
    reader.consumer = consumer  # type: ignore[assignment]
    return reader


@pytest.mark.asyncio
async def test_a_jump_checked_while_the_broker_is_away_waits_for_it_rather_than_stopping_the_app() -> None:
    """A message fetched just before the broker went away: its check waits for the broker (here 300
    unanswered polls, longer than the 10 s the check used to give up after, at its 0.2 s poll), then
    answers from the log."""
    away = reader_of(_UnreachableThenBack(silent=300, log=[0, 5]), patience=60.0)
    assert await away.next_record(ANOMALIES, 1, 5) is None  # 1-4: markers only
    skipped = reader_of(_UnreachableThenBack(silent=300, log=[0, 3, 5]), patience=60.0)
    assert await skipped.next_record(ANOMALIES, 1, 5) == 3  # a record was skipped: read it again


@pytest.mark.asyncio
async def test_a_jump_check_gives_up_with_a_clear_error_once_its_patience_is_spent() -> None:
    reader = reader_of(_UnreachableThenBack(silent=10**9, log=[0, 5]), patience=0.05)
    with pytest.raises(TimeoutError, match=r"could not read anomalies\[0\] from 1 to 5 within 0 s"):
        await reader.next_record(ANOMALIES, 1, 5)


@pytest.mark.asyncio
async def test_a_jump_check_that_must_start_its_reader_while_the_broker_is_away_waits_for_it() -> None:
    """The reader's consumer starts on first use; its start raised at once while the broker was away
    (a broker restart in the middle of a take stopped the indexer: CI, 2026-12-05)."""
    from aiokafka.errors import KafkaConnectionError

    class Starting(_UnreachableThenBack):
        attempts = 0

        async def start(self) -> None:
            Starting.attempts += 1
            if Starting.attempts == 1:
                raise KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9092)]")

        async def stop(self) -> None:
            pass

    reader = LogReader("unused:9092", read_committed=True, patience=60.0, poll=0.0)
    reader.new_consumer = lambda: Starting(silent=3, log=[0, 3, 5])  # type: ignore[assignment,method-assign]
    assert await reader.next_record(ANOMALIES, 1, 5) == 3
    assert Starting.attempts == 2
    gone = LogReader("unused:9092", read_committed=True, patience=0.0, poll=0.0)
    gone.new_consumer = lambda: Starting(silent=0, log=[])  # type: ignore[assignment,method-assign]
    Starting.attempts = 0
    with pytest.raises(TimeoutError, match=r"could not reach the broker to read anomalies\[0\] within 0 s"):
        await gone.next_record(ANOMALIES, 1, 5)


def transactions(count: int, size: int) -> list[int]:
    """The record offsets of `count` transactions of `size` records each, each followed by its commit marker."""
    return [t * (size + 1) + i for t in range(count) for i in range(size)]


@pytest.mark.asyncio
async def test_a_backlog_of_small_transactions_has_all_its_markers_checked_with_one_fetch() -> None:
    """The indexer behind a backlog of transactions of two anomalies: a jump over a marker every two
    records, each of which cost a fetch (a backlog was indexed at 180-300 anomalies a second)."""
    consumer = _UnreachableThenBack(silent=0, log=transactions(300, 2))
    reader = reader_of(consumer)
    answers = [await reader.next_record(ANOMALIES, marker, marker + 1) for marker in range(2, 897, 3)]
    assert answers == [None] * 299  # every marker but the last, which no record follows yet
    assert consumer.fetches == 1 and consumer.seeks == [(0, 2)]


@pytest.mark.asyncio
async def test_transactions_written_after_a_check_are_read_on_to_without_a_seek() -> None:
    """Caught up, each new transaction is read on from where the last check left the reader, records
    the app took in between without a jump included (not mistaken for skipped ones)."""
    consumer = _UnreachableThenBack(silent=0, log=[0, 1, 3], end=4)  # 2: a marker
    reader = reader_of(consumer)
    assert await reader.next_record(ANOMALIES, 2, 3) is None
    consumer.log += [4, 5, 7, 8]  # 6: a marker; the app then takes 7 and 8 with no jump
    consumer.end = 9
    assert await reader.next_record(ANOMALIES, 6, 7) is None
    consumer.log += [9, 10, 12]  # 11: a marker, asked about before the reader read 9 and 10
    consumer.end = 13
    assert await reader.next_record(ANOMALIES, 11, 12) is None
    assert consumer.seeks == [(0, 2)]


@pytest.mark.asyncio
async def test_a_record_skipped_where_the_reader_read_before_is_read_again_and_reported() -> None:
    """Only "no record there" comes from memory: a record remembered in a jump is fetched again, and
    one gone since (retention, compaction) is not reported."""
    consumer = _UnreachableThenBack(silent=0, log=[0, 1, 3, 4, 5, 7, 8])
    reader = reader_of(consumer)
    assert await reader.next_record(ANOMALIES, 2, 3) is None
    consumer.log.remove(4)  # gone since the reader read it
    assert await reader.next_record(ANOMALIES, 4, 7) == 5
    assert await reader.next_record(ANOMALIES, 6, 8) == 7
    assert consumer.seeks == [(0, 2), (0, 4), (0, 6)]


@pytest.mark.asyncio
async def test_a_jump_far_past_what_was_read_is_sought_to_rather_than_read_on_to() -> None:
    far = 60 + READ_ON_AT_MOST  # the first fetch reads 50 records: to 53
    consumer = _UnreachableThenBack(silent=0, log=[0, 1, 3] + list(range(4, far)) + [far + 1], fetch=50)
    reader = reader_of(consumer)
    assert await reader.next_record(ANOMALIES, 2, 3) is None
    assert await reader.next_record(ANOMALIES, far, far + 1) is None
    assert consumer.seeks == [(0, 2), (0, far)] and consumer.fetches == 2


@pytest.mark.asyncio
async def test_partitions_checked_by_turns_each_read_on_from_where_it_was() -> None:
    """A second partition assigned to the reader (an assignment starts every partition afresh) does
    not lose the first one's place: its next check reads on from there."""
    consumer = _UnreachableThenBack(silent=0, log=[0, 1, 3], end=4)
    reader = reader_of(consumer)
    other = SimpleNamespace(topic="anomalies", partition=1)
    assert await reader.next_record(ANOMALIES, 2, 3) is None
    assert await reader.next_record(other, 2, 3) is None
    consumer.log += [5]  # 4: a marker, on both partitions
    consumer.end = 6
    assert await reader.next_record(ANOMALIES, 4, 5) is None
    assert await reader.next_record(other, 4, 5) is None
    assert consumer.assigned == [TopicPartition("anomalies", 0), TopicPartition("anomalies", 1)]
    assert consumer.paused == set(consumer.assigned)  # between checks the reader asks the broker nothing
    assert consumer.seeks == [(0, 2), (0, 4), (1, 2)]  # the first partition's place kept across the assignment


@pytest.mark.asyncio
async def test_a_record_the_consumer_skipped_after_many_markers_is_judged_in_its_place() -> None:
    """End to end with `InSequence`: the reader has read the partition past a record the app's
    consumer then skips; the record is still found, the consumer sought back to it, and every record
    judged once, in order."""
    log = transactions(20, 2)  # records 0 1 3 4 6 7 ..., markers 2 5 8 ...
    reader = reader_of(_UnreachableThenBack(silent=0, log=log))
    sought: list[int] = []

    async def seek(tp: Any, offset: int) -> int | None:
        sought.append(offset)
        return None

    sequence = InSequence(seek, start_of=lambda tp: 0, next_record=reader.next_record)

    def message(offset: int) -> SimpleNamespace:
        return SimpleNamespace(tp=TopicPartition("anomalies", 0), topic="anomalies", partition=0, offset=offset)

    delivered = [0, 1, 3, 4, 6, 10, 7, 9, 10] + log[log.index(12):]  # 7 and 9 skipped at first
    judged = [o for o in delivered if await sequence.admit(message(o))]
    assert judged == log and sought == [7]
