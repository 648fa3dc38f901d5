"""The Faust app: trades topic in, per-symbol state in a RocksDB table, anomalies and dead letters out."""

from __future__ import annotations

import json
import weakref
from contextlib import contextmanager
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, Protocol

import faust
import numpy as np
import structlog
from faust.streams import _current_event

from adapters.faust.settings import StreamingSettings
from adapters.faust.state import FaustTableStateStore
from adapters.kafka.codec import decode
from adapters.memory import InMemoryAnomalySink, InMemoryDeadLetterSink
from application.detect import DetectTrades
from domain.model import Anomaly, DeadLetter
from domain.ports import Metrics, StateStore

log = structlog.get_logger()


class AsyncAnomalySink(Protocol):
    async def publish(self, anomalies: Sequence[Anomaly]) -> None: ...

    async def flush(self) -> None: ...


DetectFactory = Callable[[StateStore, InMemoryAnomalySink, InMemoryDeadLetterSink], DetectTrades]


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
        # values are pickled states: Faust passes them through untouched.
        key_serializer="raw",
        value_serializer="raw",
    )
    trades = app.topic(settings.trades_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=settings.partitions)
    anomalies = app.topic(settings.anomalies_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                          value_serializer="raw", partitions=settings.partitions)
    dlq = app.topic(settings.dlq_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                    value_serializer="raw", partitions=settings.partitions)
    # value_type=bytes makes Faust store the pickled state as is (raw codec).
    table = app.Table("symbol-state", default=None, partitions=settings.partitions, key_type=str,
                      value_type=bytes, options={"driver": "rocksdict"})
    found = InMemoryAnomalySink()
    rejected = InMemoryDeadLetterSink()
    detect = make_detect(FaustTableStateStore(table), found, rejected)

    @app.agent(trades)
    async def detect_trades(stream: Any) -> None:
        # Several messages per detect call: the per-call cost of the engine is paid once per
        # take, not once per message. Grouped by partition so each symbol's state is written to
        # the changelog partition its trades came from.
        async for events in stream.take_events(settings.take_max, within=settings.take_within):
            for partition, group in by_partition(events):
                await process(partition, group)

    async def process(partition: int, group: list[Any]) -> None:
        first, last = group[0].message, group[-1].message
        origin = f"{first.topic}[{partition}]@{first.offset}-{last.offset}"
        decoded = [decode(e.message.key, e.message.value, f"{first.topic}[{partition}]@{e.message.offset}")
                   for e in group]
        batch = np.concatenate([b for b, _ in decoded]) if decoded else np.empty(0)
        undecodable = [d for _, letters in decoded for d in letters]
        with acting_as(group[-1]):
            detect(batch, undecodable)
        out, found.anomalies = found.anomalies, []
        dead, rejected.dead_letters = rejected.dead_letters, []
        for a in out:
            await anomalies.send(key=a.symbol.encode(), value=json.dumps(a.to_dict()).encode())
            log.info("anomaly", symbol=a.symbol, detector=a.detector, score=a.score, id=a.id,
                     partition=partition, offsets=origin)
        if elasticsearch is not None and out:
            # Written (idempotently: ids are the anomaly ids) before the offsets commit: a crash
            # before the commit replays the batch and overwrites the same documents.
            await elasticsearch.publish(out)
            await elasticsearch.flush()
        for d in dead:
            d = d if d.origin else replace(d, origin=origin)
            await dlq.send(key=last.key, value=d.raw or d.detail.encode(), headers=dead_letter_headers(d))
        if on_batch is not None:
            await on_batch(len(batch), len(out))

    app.detect_trades = detect_trades  # type: ignore[attr-defined]
    app.symbol_state = table  # type: ignore[attr-defined]
    return app
