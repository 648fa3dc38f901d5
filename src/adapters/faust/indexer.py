"""The indexer: the anomalies and incidents topics into Elasticsearch, off the worker's critical path.

It reads only committed anomalies (read_committed: a worker's aborted transaction never reaches
Elasticsearch), writes them in bulk with the anomaly id as document id (idempotent: a take
written twice is the same documents), retries a transient failure for as long as it lasts, and
acknowledges a take, so its offsets can commit, only after Elasticsearch has acknowledged every
document of it. An Elasticsearch outage of any length stalls only the indexer; the worker goes
on, and the indexer catches up from its committed offsets.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from collections.abc import Sequence
from typing import Any, Protocol

import faust
import structlog

from adapters.elasticsearch.bulk import FailedAnomaly, SinkCounters
from adapters.faust.app import (GAUGE_REFRESH_PATIENCE, GAUGE_REFRESH_SECONDS, NEVER, committed_takes, in_sequence,
                                transactional_id)
from adapters.faust.indexer_lag import IndexerLag
from adapters.faust.outputs import KafkaDeadLetterSink, PartitionProducer
from adapters.faust.recovery import fetch_without_long_polls
from adapters.faust.sequence import LogReader
from adapters.faust.settings import StreamingSettings
from adapters.faust.shutdown import stop_consumer_thread_without_broker
from adapters.faust.transactions import stop_producers_of_partitions_not_held
from adapters.kafka.lag import RefreshFailures
from adapters.kafka.records import INDEX_REJECTED, decode_anomaly, decode_incident
from adapters.metrics.beat import LOOP_BEAT_SECONDS
from domain.model import DeadLetter
from domain.ports import Metrics

log = structlog.get_logger()


class IndexSink(Protocol):
    """An Elasticsearch sink of anomalies or incidents whose flush retries transient failures until they pass."""

    @property
    def counters(self) -> SinkCounters: ...

    async def publish(self, items: Sequence[Any]) -> None: ...  # anomalies or incidents

    async def flush(self) -> None: ...

    def drain_failed(self) -> list[FailedAnomaly]: ...

    async def close(self, flush: bool = True) -> None: ...


class Retention(Protocol):
    """Deletes the indices that outlived their retention (application.retention.ExpireIndices)."""

    async def __call__(self) -> list[str]: ...

    async def close(self) -> None: ...


def rejected_letters(failures: Sequence[FailedAnomaly], source: dict[str, int],
                     topic: str) -> list[tuple[int, DeadLetter]]:
    """The documents Elasticsearch refused for good as INDEX_REJECTED dead letters, each with the
    partition its record came from (`source`: id -> partition): the letter commits in that
    partition's transaction, with its offset. (Sent with the take's last partition instead, a
    refusal from another partition revoked before the commit would be lost: its offset would commit
    elsewhere while the letter's transaction aborted.)"""
    letters = []
    for failure in failures:
        a = failure.anomaly
        detail = f"Elasticsearch refused document {a.id}: HTTP {failure.status}: {failure.reason}"[:300]
        letters.append((source[a.id], DeadLetter(INDEX_REJECTED, detail, f"{topic}:{a.id}",
                                                 json.dumps(a.to_dict()).encode(), key=a.symbol.encode())))
    return letters


class ElasticsearchTally:
    """Turns a sink's running totals (written/retries/failed) into metric increments; read on a
    timer too, so retries show while an outage lasts, not only after it."""

    def __init__(self, sink: IndexSink, metrics: Metrics, kind: str = "anomalies") -> None:
        self.sink, self.metrics, self.kind = sink, metrics, kind
        self.seen = (0, 0, 0)

    def report(self) -> None:
        c = self.sink.counters
        now = (c.written, c.retries, c.failed)
        written, retries, failed = (n - s for n, s in zip(now, self.seen))
        self.seen = now
        if written or retries or failed:
            self.metrics.elasticsearch_bulk(written, retries, failed, self.kind)


def create_indexer_app(settings: StreamingSettings, sink: IndexSink, metrics: Metrics | None = None,
                       incident_sink: IndexSink | None = None, retention: Retention | None = None,
                       retention_every: float = 3600.0) -> faust.App:
    """`sink` indexes the anomalies topic; `incident_sink`, when given, the incidents topic (a second
    agent: its takes, retries and commits are its own, so a refusal of one kind stalls only that one).
    `retention`, when given, deletes expired indices every `retention_every` seconds."""
    fetch_without_long_polls()  # an anomaly waits on no long poll of a quiet partition
    # A second indexer that joined and left crashed this one on its next take (ProducerFenced): the
    # partitions it took stayed here as standbys with their producers, which it fenced and Faust then
    # reused when they came back. The worker's fix. (Standbys cannot be turned off here: with no tables
    # and none, Faust assigns round-robin and its transactions then crash on the unknown topic groups.)
    stop_producers_of_partitions_not_held()
    stop_consumer_thread_without_broker()  # stopped while the broker is away: at once, not after 60 s
    app = faust.App(
        f"{settings.app_id}-indexer",
        broker=f"kafka://{settings.bootstrap}",
        store="memory://",  # no tables: everything it knows is in Kafka and Elasticsearch
        datadir=os.path.join(settings.data_dir, "indexer"),  # Faust's own files (not <app id>-data in the cwd)
        # Transactions only for the read_committed consumer and for committing offsets together
        # with the dead letters of a take; the documents themselves are idempotent.
        processing_guarantee="exactly_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        web_port=settings.indexer_web_port,
        web_bind="127.0.0.1",
        broker_commit_interval=NEVER,
        broker_commit_every=2**62,
        # How soon the group notices a process gone (a killed one's partitions wait that long).
        broker_session_timeout=settings.indexer_session_timeout,
        broker_heartbeat_interval=settings.indexer_heartbeat_interval,
        # An outage holds a take for as long as it lasts: stay in the group meanwhile.
        broker_max_poll_interval=24 * 3600.0,
        # ... and a stop (SIGTERM) does not wait for that take to finish: it is cancelled, its offsets
        # never committed, and read again by the next indexer (documents are idempotent).
        stream_wait_empty=False,
        key_serializer="raw",
        value_serializer="raw",
    )
    anomalies = app.topic(settings.anomalies_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                          value_serializer="raw", partitions=settings.partitions)
    tallies = [ElasticsearchTally(s, metrics, kind) for s, kind in ((sink, "anomalies"), (incident_sink, "incidents"))
               if s is not None and metrics is not None]
    # One per agent: each checks its own topic's offset jumps with a log reader of its own (a reader's
    # consumer is assigned the one partition it reads; two agents sharing it would race).
    sequences = {topic: in_sequence(app, settings.bootstrap)
                 for topic in (settings.anomalies_topic, settings.incidents_topic)}
    read = [settings.anomalies_topic] + ([settings.incidents_topic] if incident_sink is not None else [])
    # The lag is read with a log reader of its own too (the agents' check their offset jumps), and
    # waits on a broker that is away no longer than a refresh: the next one tries again.
    lag_log = LogReader(settings.bootstrap, read_committed=True, patience=GAUGE_REFRESH_PATIENCE, poll=0.05) \
        if metrics is not None else None
    lag = IndexerLag(read, lag_log) if lag_log is not None else None

    async def index_topic(stream: Any, topic: str, kind_sink: IndexSink, decode: Any) -> None:
        try:
            async for events in committed_takes(app, stream, settings.take_max, settings.indexer_take_within,
                                                sequences[topic]):
                await index(events, topic, kind_sink, decode)
                if lag is not None:
                    lag.written(topic, ((e.message.partition, e.message.offset) for e in events))
        except Exception as exc:  # noqa: BLE001 - refused for good (credentials, mapping) or a failed commit
            # Stop, committing nothing more: Faust would restart the agent past this take.
            log.error("indexer_stopped", topic=topic, error=f"{type(exc).__name__}: {exc}"[:500])
            await app.crash(exc)

    @app.agent(anomalies)
    async def index_anomalies(stream: Any) -> None:
        await index_topic(stream, settings.anomalies_topic, sink, decode_anomaly)

    if incident_sink is not None:
        incidents = app.topic(settings.incidents_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                              value_serializer="raw", partitions=settings.partitions)
        known_sink: IndexSink = incident_sink

        @app.agent(incidents)
        async def index_incidents(stream: Any) -> None:
            await index_topic(stream, settings.incidents_topic, known_sink, decode_incident)

        app.index_incidents = index_incidents  # type: ignore[attr-defined]

    async def index(events: list[Any], topic: str, kind_sink: IndexSink, decode: Any) -> None:
        letters: list[tuple[int, DeadLetter]] = []  # (source partition, letter)
        documents: list[Any] = []
        source: dict[str, int] = {}  # document id -> the partition it came from
        for event in events:
            m = event.message
            decoded = decode(m.value, f"{m.topic}[{m.partition}]@{m.offset}")
            if isinstance(decoded, DeadLetter):
                letters.append((m.partition, replace(decoded, key=m.key)))
            else:  # an anomaly or an incident
                documents.append(decoded)
                source[decoded.id] = m.partition
        try:
            await kind_sink.publish(documents)
            await kind_sink.flush()  # transient failures are retried inside, for as long as they last
        finally:
            for tally in tallies:
                tally.report()
        letters += rejected_letters(kind_sink.drain_failed(), source, topic)
        for partition in sorted({p for p, _ in letters}):
            # In the transaction of the source partition they came from, with its offsets.
            out = PartitionProducer(app.producer, transactional_id(app, topic, partition))
            mine = [letter for p, letter in letters if p == partition]
            await KafkaDeadLetterSink(out, settings.dlq_topic).publish(mine)
            await out.delivered()
            for letter in mine:
                log.error("anomaly_dead_lettered", reason=letter.reason, detail=letter.detail, origin=letter.origin)
            if metrics is not None:
                for letter in mine:
                    metrics.dead_letters(letter.reason, 1)
        log.debug("indexed", messages=len(events), documents=len(documents), dead_letters=len(letters))

    if metrics is not None:
        beating = metrics

        @app.timer(interval=LOOP_BEAT_SECONDS)
        async def beat() -> None:
            beating.event_loop_beat()  # what /metrics (its own thread) measures a blocked loop from

    if lag is not None and metrics is not None:
        known_lag, reporting, failures = lag, metrics, RefreshFailures()

        @app.timer(interval=GAUGE_REFRESH_SECONDS)
        async def refresh_lag() -> None:
            try:
                committed = app.consumer._committed_offset.get  # type: ignore[attr-defined]  # what recovery sought to
                measured = await known_lag.measure(list(app.consumer.assignment()), committed)
            except Exception as exc:  # noqa: BLE001 - a gauge refresh must never stop the indexer
                # Before the consumer starts, mid-rebalance or with the broker away; the next tick retries.
                failures.failed(exc)
                return
            failures.succeeded()
            for topic, (lags, stalled) in measured.items():
                reporting.indexer_lag(topic, lags, stalled)

    if tallies:
        @app.timer(interval=GAUGE_REFRESH_SECONDS)
        async def report_retries() -> None:
            for tally in tallies:
                tally.report()

    if retention is not None:
        expire = retention

        @app.timer(interval=retention_every)
        async def expire_indices() -> None:
            try:
                deleted = await expire()
                if deleted:
                    log.info("indices_expired", count=len(deleted), oldest=deleted[0], newest=deleted[-1])
            except Exception as exc:  # noqa: BLE001 - Elasticsearch down or refusing: try again next time
                log.warning("indices_expiry_failed", error=f"{type(exc).__name__}: {exc}"[:300],
                            retry_in_s=retention_every)

    @app.on_before_shutdown.connect
    async def close_sink(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Sent once the consumer has stopped. A take still unwritten is unacknowledged and will be
        # written by whoever takes the partition over: drop it here rather than wait on an outage.
        await sink.close(flush=False)
        if incident_sink is not None:
            await incident_sink.close(flush=False)
        if retention is not None:
            await retention.close()
        if lag_log is not None:
            await lag_log.close()

    app.index_anomalies = index_anomalies  # type: ignore[attr-defined]
    return app
