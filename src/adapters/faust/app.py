"""The Faust app: trades topic in, per-symbol state in a RocksDB table, anomalies and dead letters out."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import faust
import structlog

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
        processing_guarantee="exactly_once",
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
        async for event in stream.events():
            message = event.message
            origin = f"{message.topic}[{message.partition}]@{message.offset}"
            batch, undecodable = decode(message.key, message.value, origin)
            detect(batch, undecodable)
            out, found.anomalies = found.anomalies, []
            dead, rejected.dead_letters = rejected.dead_letters, []
            for a in out:
                await anomalies.send(key=a.symbol.encode(), value=json.dumps(a.to_dict()).encode())
                log.info("anomaly", symbol=a.symbol, detector=a.detector, score=a.score, id=a.id,
                         partition=message.partition, offset=message.offset)
            if elasticsearch is not None and out:
                # Written (idempotently, ids are the anomaly ids) before the offsets commit: a
                # crash before the commit replays the batch and overwrites the same documents.
                await elasticsearch.publish(out)
                await elasticsearch.flush()
            for d in dead:
                d = d if d.origin else replace(d, origin=origin)
                await dlq.send(key=message.key, value=d.raw or d.detail.encode(), headers=dead_letter_headers(d))
            if on_batch is not None:
                await on_batch(len(batch), len(out))

    app.detect_trades = detect_trades  # type: ignore[attr-defined]
    app.symbol_state = table  # type: ignore[attr-defined]
    return app
