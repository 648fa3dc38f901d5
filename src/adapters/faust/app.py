"""The Faust app: trades topic in, per-symbol state in a RocksDB table, anomalies and dead letters out."""

from __future__ import annotations

import json
import time
import weakref
from contextlib import contextmanager
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

import faust
import numpy as np
import structlog
from faust.streams import _current_event
from faust.types import TP

from adapters.faust.recovery import restore_tables_from_broker_offsets
from adapters.faust.settings import StreamingSettings
from adapters.kafka.codec import decode
from adapters.memory import InMemoryAnomalySink, InMemoryDeadLetterSink
from application.detect import DetectTrades
from domain.model import Anomaly, DeadLetter
from domain.state import StateFormatError
from domain.ports import Metrics

log = structlog.get_logger()

GAUGE_REFRESH_SECONDS = 5.0  # how often consumer lag and held state are re-read for the gauges


class AsyncAnomalySink(Protocol):
    async def publish(self, anomalies: Sequence[Anomaly]) -> None: ...

    async def flush(self) -> None: ...


class ElasticsearchTally:
    """Turns a sink's running totals (`counters`: written/retries/failed) into per-flush increments."""

    def __init__(self, sink: object, metrics: Metrics) -> None:
        self.sink, self.metrics = sink, metrics
        self.seen = (0, 0, 0)

    def report(self) -> None:
        counters = getattr(self.sink, "counters", None)
        if counters is None:
            return
        now = (counters.written, counters.retries, counters.failed)
        written, retries, failed = (n - s for n, s in zip(now, self.seen))
        self.seen = now
        if written or retries or failed:
            self.metrics.elasticsearch_bulk(written, retries, failed)


def partition_lags(highwater: Callable[[TP], int | None], owned: Iterable[TP],
                   processed: Mapping[int, int]) -> dict[int, int]:
    """Messages after the last offset processed, per owned partition (`processed`: partition ->
    last processed offset); partitions missing from `processed` are left out."""
    lags: dict[int, int] = {}
    for tp in owned:
        end = highwater(tp)
        if end is None or tp.partition not in processed:  # unknown, not zero
            continue
        lags[tp.partition] = max(0, end - (processed[tp.partition] + 1))
    return lags


# (symbol-state table, pool-state table, anomaly buffer, dead-letter buffer) -> the detect use case
DetectFactory = Callable[[MutableMapping[str, bytes], MutableMapping[str, bytes], InMemoryAnomalySink,
                          InMemoryDeadLetterSink], DetectTrades]


def dead_letter_headers(d: DeadLetter) -> list[tuple[str, bytes]]:
    return [("reason", d.reason.encode()), ("detail", d.detail.encode()[:4096]), ("origin", d.origin.encode())]


def by_partition(events: Sequence[Any]) -> list[tuple[int, list[Any]]]:
    """Events grouped by their partition, each group in offset order."""
    groups: dict[int, list[Any]] = {}
    for e in events:
        groups.setdefault(e.message.partition, []).append(e)
    return sorted(groups.items())


@contextmanager
def acting_as(event: Any) -> Iterator[None]:
    """Make `event` Faust's current event, so table writes go to its partition's changelog and store.

    Faust finds the partition of a table write through this context variable; a batch taken
    with `take_events` would otherwise leave whichever event came last in charge.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def create_app(settings: StreamingSettings, make_detect: DetectFactory,
               elasticsearch: AsyncAnomalySink | None = None, metrics: Metrics | None = None,
               on_batch: Callable[[int, int], Awaitable[None]] | None = None) -> faust.App:
    """Build the worker app. The agent only decodes, calls the detect use case and publishes."""
    restore_tables_from_broker_offsets()
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap}",
        store=settings.store,
        datadir=settings.data_dir,
        # Changelog writes, output records and consumed offsets commit in one transaction: a
        # worker killed mid-stream resumes from state that matches its committed offsets.
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_port=settings.web_port,
        web_bind="127.0.0.1",
        table_standby_replicas=0,
        # Every topic here carries bytes the codec (trades) or JSON (anomalies) owns, and table
        # values are encoded state records (domain.state): Faust passes them through untouched.
        key_serializer="raw",
        value_serializer="raw",
    )
    trades = app.topic(settings.trades_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=settings.partitions)
    anomalies = app.topic(settings.anomalies_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                          value_serializer="raw", partitions=settings.partitions)
    dlq = app.topic(settings.dlq_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                    value_serializer="raw", partitions=settings.partitions)
    # value_type=bytes makes Faust store the encoded state as is (raw codec). Per-symbol state, and
    # the Isolation Forest's pooled samples keyed by pool (= partition, see adapters.kafka.keys):
    # both written while acting as an event of the partition, so each lands in that changelog.
    table = app.Table("symbol-state", default=None, partitions=settings.partitions, key_type=str,
                      value_type=bytes, options={"driver": "rocksdict"})
    pools = app.Table("pool-state", default=None, partitions=settings.partitions, key_type=str,
                      value_type=bytes, options={"driver": "rocksdict"})
    found = InMemoryAnomalySink()
    rejected = InMemoryDeadLetterSink()
    detect = make_detect(table, pools, found, rejected)

    @app.agent(trades)
    async def detect_trades(stream: Any) -> None:
        # Several messages per detect call: the per-call cost of the engine is paid once per
        # take, not once per message. Grouped by partition so each symbol's state is written to
        # the changelog partition its trades came from.
        async for events in stream.take_events(settings.take_max, within=settings.take_within):
            for partition, group in by_partition(events):
                await process(partition, group)

    processed: dict[int, int] = {}  # trades partition -> last offset processed here
    tally = ElasticsearchTally(elasticsearch, metrics) if elasticsearch is not None and metrics is not None else None

    async def process(partition: int, group: list[Any]) -> None:
        first, last = group[0].message, group[-1].message
        origin = f"{first.topic}[{partition}]@{first.offset}-{last.offset}"
        # Every log line of this batch (the use case's, the sinks' retries) says where it came from.
        with structlog.contextvars.bound_contextvars(partition=partition, offsets=origin):
            await process_group(partition, group, origin)
        processed[partition] = last.offset

    async def process_group(partition: int, group: list[Any], origin: str) -> None:
        started = time.perf_counter()
        first, last = group[0].message, group[-1].message
        decoded = [decode(e.message.key, e.message.value, f"{first.topic}[{partition}]@{e.message.offset}")
                   for e in group]
        batch = np.concatenate([b for b, _ in decoded])  # a take is never empty
        undecodable = [d for _, letters in decoded for d in letters]
        with acting_as(group[-1]):
            try:
                detect(batch, undecodable)
            except StateFormatError as exc:
                # Stored state this release cannot read (another format, or the first release's
                # pickles): going on would judge these trades against nothing and commit them. Stop
                # the worker with one line that says which state and which format.
                log.error("state_unreadable", error=str(exc))
                await app.crash(exc)
                return
        out, found.anomalies = found.anomalies, []
        dead, rejected.dead_letters = rejected.dead_letters, []
        for a in out:
            await anomalies.send(key=a.symbol.encode(), value=json.dumps(a.to_dict()).encode())
            log.info("anomaly", symbol=a.symbol, detector=a.detector, score=a.score, id=a.id, reason=a.reason)
        if elasticsearch is not None and out:
            # Written (idempotently: ids are the anomaly ids) before the offsets commit: a crash
            # before the commit replays the batch and overwrites the same documents.
            await elasticsearch.publish(out)
            await elasticsearch.flush()
            if tally is not None:
                tally.report()
        for d in dead:
            d = d if d.origin else replace(d, origin=origin)
            await dlq.send(key=last.key, value=d.raw or d.detail.encode(), headers=dead_letter_headers(d))
        log.info("batch", messages=len(group), trades=len(batch), anomalies=len(out), dead_letters=len(dead),
                 seconds=round(time.perf_counter() - started, 4))
        if on_batch is not None:
            await on_batch(len(batch), len(out))

    if metrics is not None:
        gauges = metrics

        @app.timer(interval=GAUGE_REFRESH_SECONDS)
        async def refresh_gauges() -> None:
            try:
                owned = [tp for tp in app.consumer.assignment() if tp.topic == settings.trades_topic]
                for gone in processed.keys() - {tp.partition for tp in owned}:
                    del processed[gone]  # revoked: a later reassignment starts from its commit
                done = dict(processed)
                for tp in owned:
                    if tp.partition not in done:  # nothing processed here yet: count from the fetch position
                        position = await app.consumer.position(tp)
                        if position is not None:
                            done[tp.partition] = position - 1
                gauges.consumer_lag(partition_lags(app.consumer.highwater, owned, done))
                gauges.state_symbols(len(table))
            except Exception as exc:  # noqa: BLE001 - a gauge refresh must never stop the worker
                # Before the consumer starts or mid-rebalance the consumer and table refuse; the
                # next tick retries, and the failure is visible here rather than swallowed.
                log.warning("metrics_refresh_failed", error=f"{type(exc).__name__}: {exc}")

    app.detect_trades = detect_trades  # type: ignore[attr-defined]
    app.symbol_state = table  # type: ignore[attr-defined]
    return app
