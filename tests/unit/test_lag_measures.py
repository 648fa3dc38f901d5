"""The indexer's and the notifier's lag: messages after the last one done, commit markers not counted
once caught up, and how long a partition with messages waiting has not moved."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from aiokafka import TopicPartition

from adapters.faust.indexer_lag import IndexerLag
from adapters.kafka.lag import WaitingRecords
from adapters.kafka.notifier import notifier_lags
from adapters.memory import InMemoryMetrics

ANOMALIES, INCIDENTS = "anomalies", "incidents"


def tp(partition: int, topic: str = ANOMALIES) -> TopicPartition:
    return TopicPartition(topic, partition)


class FakeLog:
    """A transactional topic as a read_committed reader sees it: the offsets holding records; every
    other offset below the end is a commit marker (or an aborted record)."""

    def __init__(self) -> None:
        self.records: dict[Any, list[int]] = {}
        self.ends: dict[Any, int] = {}
        self.reads = 0

    def commit(self, where: Any, count: int) -> None:
        """A worker's transaction: `count` records, then its commit marker."""
        end = self.ends.get(where, 0)
        self.records.setdefault(where, []).extend(range(end, end + count))
        self.ends[where] = end + count + 1

    async def next_record(self, where: Any, first: int, before: int) -> int | None:
        self.reads += 1
        return next((o for o in self.records.get(where, []) if first <= o < before), None)

    async def end_offsets(self, tps: Sequence[Any]) -> dict[Any, int]:
        return {t: self.ends.get(t, 0) for t in tps}


def test_a_caught_up_partition_of_a_transactional_topic_has_no_lag_though_its_end_counts_a_marker() -> None:
    log = FakeLog()
    log.commit(tp(0), 3)  # records 0-2, marker 3: end 4
    waiting = WaitingRecords(log.next_record)
    assert asyncio.run(waiting.lag(tp(0), -1, 4)) == 4  # nothing done: from the first record to the end
    assert asyncio.run(waiting.lag(tp(0), 1, 4)) == 2  # record 2 and the marker wait
    assert asyncio.run(waiting.lag(tp(0), 2, 4)) == 0  # only the marker after the last record done


def test_the_log_is_read_once_per_offset_done_not_at_every_refresh() -> None:
    log = FakeLog()
    log.commit(tp(0), 5)
    waiting = WaitingRecords(log.next_record)
    asyncio.run(waiting.lag(tp(0), -1, 6))
    log.commit(tp(0), 5)  # more arrives while nothing is done: the first record waiting is still 0
    assert asyncio.run(waiting.lag(tp(0), -1, log.ends[tp(0)])) == 12
    assert log.reads == 1
    asyncio.run(waiting.lag(tp(0), 10, 12))  # caught up: one look at the marker after it
    assert asyncio.run(waiting.lag(tp(0), 10, 12)) == 0
    assert log.reads == 2


def test_the_indexer_lag_rises_while_nothing_is_written_and_falls_to_zero_once_it_catches_up() -> None:
    log, now = FakeLog(), [0.0]
    lag = IndexerLag([ANOMALIES, INCIDENTS], log, clock=lambda: now[0])
    owned = [tp(0), tp(1), tp(0, INCIDENTS)]
    committed = {tp(1): 3}.get  # partition 1 was indexed up to offset 3 by an earlier indexer
    log.commit(tp(0), 4)
    log.commit(tp(1), 2)
    log.commit(tp(1), 2)  # records 0-1, 3-4; markers 2 and 5
    metrics = InMemoryMetrics()

    def refresh() -> None:
        for topic, (lags, stalled) in asyncio.run(lag.measure(owned, committed)).items():
            metrics.indexer_lag(topic, lags, stalled)

    refresh()
    assert metrics.indexer == {ANOMALIES: ({0: 5, 1: 3}, {0: 0.0, 1: 0.0}), INCIDENTS: ({0: 0}, {0: 0.0})}
    now[0] = 400.0
    log.commit(tp(0), 10)
    refresh()
    assert metrics.indexer[ANOMALIES] == ({0: 16, 1: 3}, {0: 400.0, 1: 400.0})  # waiting, none written
    lag.written(ANOMALIES, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 3), (1, 4)])
    now[0] = 405.0
    refresh()
    assert metrics.indexer[ANOMALIES] == ({0: 11, 1: 0}, {0: 0.0, 1: 0.0})  # moving on; 1 caught up
    lag.written(ANOMALIES, [(0, o) for o in range(5, 15)])
    refresh()
    assert metrics.indexer[ANOMALIES] == ({0: 0, 1: 0}, {0: 0.0, 1: 0.0})
    owned.remove(tp(1))  # handed to another indexer: no longer reported here
    refresh()
    assert metrics.indexer[ANOMALIES] == ({0: 0}, {0: 0.0})


class FakeConsumer:
    """What notifier_lags asks of the notifier's consumer."""

    def __init__(self, ends: dict[TopicPartition, int], positions: dict[TopicPartition, int]) -> None:
        self.ends, self.positions = ends, positions

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {t: self.ends[t] for t in tps}

    async def position(self, where: TopicPartition) -> int:
        return self.positions[where]


def test_the_notifier_counts_its_batch_in_hand_as_waiting_though_the_consumer_fetched_past_it() -> None:
    consumer = FakeConsumer({tp(0): 120, tp(1): 40}, {tp(0): 120, tp(1): 38})
    lags, done = asyncio.run(notifier_lags(consumer, {0: 100}))  # type: ignore[arg-type]
    assert lags == {0: 20, 1: 2} and done == {0: 99, 1: 37}
    consumer.positions[tp(1)] = 40  # fetched past the last commit marker, nothing in hand: caught up
    lags, done = asyncio.run(notifier_lags(consumer, {}))  # type: ignore[arg-type]
    assert lags == {0: 0, 1: 0} and done == {0: 119, 1: 39}


def test_a_refresh_failing_at_every_tick_is_said_once_per_outage_and_its_end_too(logs_of: Any) -> None:
    """With the broker away each process logged metrics_refresh_failed every 5 s for the whole outage."""
    from adapters.kafka import lag

    logs = logs_of(lag)
    now = [100.0]
    failures = lag.RefreshFailures(clock=lambda: now[0])
    away = ConnectionError("no broker answered at 127.0.0.1:9092")
    for _ in range(12):  # a minute of ticks
        failures.failed(away)
        now[0] += 5
    failures.failed(TimeoutError("metadata"))  # another error: said again
    failures.succeeded()
    failures.succeeded()  # nothing more to say
    said = [(e["event"], e["log_level"]) for e in logs]
    assert said == [("metrics_refresh_failed", "warning")] + [("metrics_refresh_failed", "debug")] * 11 + [
        ("metrics_refresh_failed", "warning"), ("metrics_refresh_recovered", "info")]
    assert logs[0]["error"] == "ConnectionError: no broker answered at 127.0.0.1:9092"
    assert (logs[-2]["failures"], logs[-1]["failures"], logs[-1]["seconds"]) == (13, 13, 60.0)
    failures.failed(away)  # a new outage: its first failure is a warning again
    assert (logs[-1]["log_level"], "failures" in logs[-1]) == ("warning", False)


def test_refresh_errors_that_alternate_are_each_said_once_per_outage_and_read_once(logs_of: Any) -> None:
    """A broker going away gave timeouts and refused connections by turns: each turn was a warning
    again. aiokafka's errors carry their type in their message, and a timeout may carry none."""
    from aiokafka.errors import KafkaTimeoutError

    from adapters.kafka import lag

    logs = logs_of(lag)
    failures = lag.RefreshFailures(clock=lambda: 0.0)
    for _ in range(6):
        failures.failed(KafkaTimeoutError("Failed to get offsets by times in 40000 ms"))
        failures.failed(TimeoutError())
    warned = [e["error"] for e in logs if e["log_level"] == "warning"]
    assert warned == ["KafkaTimeoutError: Failed to get offsets by times in 40000 ms", "TimeoutError"]
    assert [e["log_level"] for e in logs].count("debug") == 10


class Broker:
    """The ends of the trades partitions as the broker gives them; `away`: it does not answer."""

    def __init__(self, ends: dict[Any, int]) -> None:
        self.ends, self.away = ends, False

    async def highwaters(self, *tps: Any) -> dict[Any, int]:
        if self.away:
            await asyncio.Event().wait()
        return {t: self.ends[t] for t in tps}

    async def position(self, where: Any) -> int | None:
        if self.away:
            await asyncio.Event().wait()
        return 0


def test_the_worker_lag_is_not_reported_as_it_was_while_the_broker_is_away() -> None:
    """With Kafka stopped the worker went on reporting the lag it last fetched, for as long as the
    outage lasted, so no alert said the partitions were unjudged (StockanomalyPartitionsUnowned)."""
    from adapters.kafka.lag import ConsumerLag

    now = [0.0]
    broker = Broker({tp(0, "trades"): 50, tp(1, "trades"): 10})
    lag = ConsumerLag(broker.highwaters, broker.position, timeout=0.05, clock=lambda: now[0])
    owned = [tp(0, "trades"), tp(1, "trades")]

    assert asyncio.run(lag.measure(owned, {0: 39, 1: 9})) == ({0: 10, 1: 0}, {0: 0.0, 1: 0.0})
    now[0] = 60.0
    assert asyncio.run(lag.measure(owned, {0: 39, 1: 9})) == ({0: 10, 1: 0}, {0: 60.0, 1: 0.0})
    broker.away = True
    for processed in ({0: 39, 1: 9}, {}):  # nothing processed yet: the consumer's position is asked too
        with pytest.raises(TimeoutError, match="the broker did not give the ends of trades within 0.05 s"):
            asyncio.run(asyncio.wait_for(lag.measure(owned, processed), 5.0))  # the worker then empties its gauges
    broker.away, now[0] = False, 600.0
    # Back: how long partition 0 waited is counted from now, not across the outage.
    assert asyncio.run(lag.measure(owned, {0: 39, 1: 9})) == ({0: 10, 1: 0}, {0: 0.0, 1: 0.0})
