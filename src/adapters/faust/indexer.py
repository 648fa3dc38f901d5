"""The indexer: the anomalies topic into Elasticsearch, off the worker's critical path.

It reads only committed anomalies (read_committed: a worker's aborted transaction never reaches
Elasticsearch), writes them in bulk with the anomaly id as document id (idempotent: a take
written twice is the same documents), retries a transient failure for as long as it lasts, and
acknowledges a take, so its offsets can commit, only after Elasticsearch has acknowledged every
document of it. An Elasticsearch outage of any length stalls only the indexer; the worker goes
on, and the indexer catches up from its committed offsets.
"""

from __future__ import annotations

import json
from dataclasses import replace
from collections.abc import Sequence
from typing import Any, Protocol

import faust
import structlog

from adapters.elasticsearch.bulk import FailedAnomaly, SinkCounters
from adapters.faust.app import GAUGE_REFRESH_SECONDS, NEVER, committed_takes, in_sequence, transactional_id
from adapters.faust.outputs import KafkaDeadLetterSink, PartitionProducer
from adapters.faust.recovery import fetch_without_long_polls
from adapters.faust.settings import StreamingSettings
from domain.model import Anomaly, DeadLetter
from domain.ports import Metrics

log = structlog.get_logger()


class IndexSink(Protocol):
    """An Elasticsearch anomaly sink whose flush retries transient failures until they pass."""

    @property
    def counters(self) -> SinkCounters: ...

    async def publish(self, anomalies: Sequence[Anomaly]) -> None: ...

    async def flush(self) -> None: ...

    def drain_failed(self) -> list[FailedAnomaly]: ...

    async def close(self, flush: bool = True) -> None: ...


class ElasticsearchTally:
    """Turns a sink's running totals (written/retries/failed) into metric increments; read on a
    timer too, so retries show while an outage lasts, not only after it."""

    def __init__(self, sink: IndexSink, metrics: Metrics) -> None:
        self.sink, self.metrics = sink, metrics
        self.seen = (0, 0, 0)

    def report(self) -> None:
        c = self.sink.counters
        now = (c.written, c.retries, c.failed)
        written, retries, failed = (n - s for n, s in zip(now, self.seen))
        self.seen = now
        if written or retries or failed:
            self.metrics.elasticsearch_bulk(written, retries, failed)


def decode_anomaly(value: bytes | None, origin: str) -> Anomaly | DeadLetter:
    try:
        return Anomaly.from_dict(json.loads(value or b""))
    except (ValueError, KeyError, TypeError) as exc:
        return DeadLetter("bad_anomaly", f"not an anomaly record: {type(exc).__name__}: {exc}"[:300], origin,
                          value or b"")


def create_indexer_app(settings: StreamingSettings, sink: IndexSink, metrics: Metrics | None = None) -> faust.App:
    fetch_without_long_polls()  # an anomaly waits on no long poll of a quiet partition
    app = faust.App(
        f"{settings.app_id}-indexer",
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",  # no tables: everything it knows is in Kafka and Elasticsearch
        # Transactions only for the read_committed consumer and for committing offsets together
        # with the dead letters of a take; the documents themselves are idempotent.
        processing_guarantee="exactly_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_port=settings.indexer_web_port,
        web_bind="127.0.0.1",
        broker_commit_interval=NEVER,
        broker_commit_every=2**62,
        # An outage holds a take for as long as it lasts: stay in the group meanwhile.
        broker_max_poll_interval=24 * 3600.0,
        key_serializer="raw",
        value_serializer="raw",
    )
    anomalies = app.topic(settings.anomalies_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                          value_serializer="raw", partitions=settings.partitions)
    tally = ElasticsearchTally(sink, metrics) if metrics is not None else None
    sequence = in_sequence(app, settings.bootstrap)

    @app.agent(anomalies)
    async def index_anomalies(stream: Any) -> None:
        try:
            async for events in committed_takes(app, stream, settings.take_max, settings.take_within, sequence):
                await index(events)
        except Exception as exc:  # noqa: BLE001 - refused for good (credentials, mapping) or a failed commit
            # Stop, committing nothing more: Faust would restart the agent past this take.
            log.error("indexer_stopped", error=f"{type(exc).__name__}: {exc}"[:500])
            await app.crash(exc)

    async def index(events: list[Any]) -> None:
        letters: list[tuple[int, DeadLetter]] = []  # (anomalies partition, letter)
        documents: list[Anomaly] = []
        for event in events:
            m = event.message
            decoded = decode_anomaly(m.value, f"{m.topic}[{m.partition}]@{m.offset}")
            if isinstance(decoded, Anomaly):
                documents.append(decoded)
            else:
                letters.append((m.partition, replace(decoded, key=m.key)))
        try:
            await sink.publish(documents)
            await sink.flush()  # transient failures are retried inside, for as long as they last
        finally:
            if tally is not None:
                tally.report()
        for failure in sink.drain_failed():
            a = failure.anomaly
            detail = f"Elasticsearch refused document {a.id}: HTTP {failure.status}: {failure.reason}"[:300]
            letters.append((events[-1].message.partition,
                            DeadLetter("index_rejected", detail, f"{settings.anomalies_topic}:{a.id}",
                                       json.dumps(a.to_dict()).encode(), key=a.symbol.encode())))
        for partition in sorted({p for p, _ in letters}):
            # In the transaction of the anomalies partition they came from, with its offsets.
            out = PartitionProducer(app.producer, transactional_id(app, settings.anomalies_topic, partition))
            mine = [letter for p, letter in letters if p == partition]
            await KafkaDeadLetterSink(out, settings.dlq_topic).publish(mine)
            await out.delivered()
            for letter in mine:
                log.error("anomaly_dead_lettered", reason=letter.reason, detail=letter.detail, origin=letter.origin)
            if metrics is not None:
                for letter in mine:
                    metrics.dead_letters(letter.reason, 1)
        log.debug("indexed", messages=len(events), documents=len(documents), dead_letters=len(letters))

    if tally is not None:
        @app.timer(interval=GAUGE_REFRESH_SECONDS)
        async def report_retries() -> None:
            tally.report()

    @app.on_before_shutdown.connect
    async def close_sink(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Sent once the consumer has stopped. A take still unwritten is unacknowledged and will be
        # written by whoever takes the partition over: drop it here rather than wait on an outage.
        await sink.close(flush=False)

    app.index_anomalies = index_anomalies  # type: ignore[attr-defined]
    return app
