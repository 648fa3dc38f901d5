"""Reading a topic from the command line: its last records, or from an offset, optionally following it."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from adapters.kafka.errors import said
from domain.errors import SourceError


async def read_records(bootstrap: str, topic: str, *, last: int | None = None, offset: int | None = None,
                       partitions: list[int] | None = None, follow: bool = False, overall: bool = False,
                       isolation_level: str = "read_committed",
                       tie: Callable[[Any], Any] | None = None) -> AsyncGenerator[Any, None]:
    """Records of `topic` (every partition, or `partitions`), per partition in offset order: the
    `last` of each partition (with `overall`, the `last` of them all, in the order they were
    written: Kafka's record timestamps, in milliseconds; `tie` orders records of one millisecond
    across partitions, where Kafka keeps no order), or from `offset` on (default: from the
    beginning), up to the end offsets as they were at the start; with `follow`, then whatever
    arrives until cancelled. No consumer group: nothing is committed, no worker's position moves.
    SourceError, one line, when the topic or a partition does not exist or the broker cannot be
    reached."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation_level,
                                enable_auto_commit=False, request_timeout_ms=10_000)
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()  # what it opened before failing
        raise SourceError(f"Kafka at {bootstrap}: {said(exc)}") from None
    try:
        known = await partitions_of(bootstrap, topic)
        if not known:
            raise SourceError(f"no topic {topic!r} at {bootstrap}")
        chosen = sorted(known if partitions is None else set(partitions))  # a partition given twice is read once
        missing = sorted(set(chosen) - known)
        if missing:
            raise SourceError(f"{topic} has partitions {sorted(known)}, not {missing}")
        tps = [TopicPartition(topic, p) for p in chosen]
        consumer.assign(tps)
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        if last is not None:
            newest = await last_records(consumer, tps, starts, ends, last)
            records = [r for tp in tps for r in newest[tp]]
            if overall:  # the last `last` of the topic: by the time they were written, then where
                records = sorted(records, key=lambda r: (r.timestamp, tie(r) if tie else 0, r.partition,
                                                         r.offset))[-last:]
            for record in records:
                yield record
            for tp in tps:
                consumer.seek(tp, ends[tp])  # following goes on from the end offsets of the start
        else:
            for tp in tps:
                consumer.seek(tp, min(max(starts[tp], offset or 0), ends[tp]))
        pending = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        while pending or follow:
            batch = await consumer.getmany(*tps, timeout_ms=200)
            for tp, records in sorted(batch.items(), key=lambda item: item[0].partition):
                for record in records:
                    yield record
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:  # transaction markers count as read
                    pending.discard(tp)
    finally:
        await consumer.stop()


async def last_records(consumer: AIOKafkaConsumer, tps: list[TopicPartition], starts: dict[TopicPartition, int],
                        ends: dict[TopicPartition, int], last: int) -> dict[TopicPartition, list[Any]]:
    """The last `last` records of each partition below its end offset. On a transactional topic
    (anomalies, incidents) every transaction's commit marker takes an offset too, and aborted
    transactions leave records a read-committed consumer never sees: so the last `last` offsets
    may hold fewer records. The window read back from the end grows (x4) until it holds `last`
    records or reaches the partition's beginning."""
    newest: dict[TopicPartition, list[Any]] = {tp: [] for tp in tps}
    todo = {tp for tp in tps if ends[tp] > starts[tp]}
    window = last
    while todo:
        for tp in todo:
            consumer.seek(tp, max(starts[tp], ends[tp] - window))
        found: dict[TopicPartition, list[Any]] = {tp: [] for tp in todo}
        reading = set(todo)
        while reading:
            batch = await consumer.getmany(*reading, timeout_ms=200)
            for tp, records in batch.items():
                found[tp] += [r for r in records if r.offset < ends[tp]]
            for tp in list(reading):
                if await consumer.position(tp) >= ends[tp]:  # transaction markers count as read
                    reading.discard(tp)
        for tp in list(todo):
            newest[tp] = found[tp][-last:]
            if len(found[tp]) >= last or ends[tp] - window <= starts[tp]:
                todo.discard(tp)
        window *= 4
    return newest


async def partitions_of(bootstrap: str, topic: str) -> set[int]:
    """The partitions of `topic` (empty: no such topic), from the broker's metadata."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {int(p["partition"]) for t in described if t.get("error_code", 0) == 0 for p in t["partitions"]}
