"""KafkaTradePublisher: the TradePublisher over one long-lived, idempotent aiokafka producer."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import structlog
from aiokafka import AIOKafkaProducer

from adapters.kafka.codec import encode_runs
from adapters.kafka.keys import partition_of
from adapters.kafka.marks import mark_header
from adapters.kafka.dead_letters import dead_letter_record
from adapters.kafka.topics import ensure_topics
from domain.errors import ConfigError
from domain.model import DeadLetter
from domain.ports import IngestMark, Sent
from domain.symbols import SymbolRuns

log = structlog.get_logger()

COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
# A record batch must fit the broker's message.max.bytes (1 MiB by default) after compression.
MAX_BATCH_BYTES = 1_000_000


class KafkaTradePublisher:
    """Trade batches to `topic` keyed by symbol (so one symbol stays on one partition, in order);
    dead letters to `dlq_topic` (adapters.kafka.dead_letters). On start, the trades, anomalies,
    incidents and dead-letter topics are created when missing and refused when their partition count differs.

    Sends are pipelined: `publish` returns once the message is queued in the producer, keeping up
    to `window` messages unacknowledged; the oldest is awaited when the window is full, so a
    delivery error surfaces within `window` messages and memory stays bounded.
    """

    def __init__(self, bootstrap: str, topic: str = "trades", dlq_topic: str = "trades.dlq", *,
                 partitions: int = 4, replication_factor: int = 1, compression: str = "none",
                 linger_ms: int = 5, window: int = 512, client_id: str = "stockanomaly-ingest",
                 anomalies_topic: str = "anomalies", incidents_topic: str = "incidents",
                 message_trades: int = 2_000) -> None:
        if compression not in COMPRESSIONS:
            raise ConfigError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
        self.bootstrap, self.topic, self.dlq_topic = bootstrap, topic, dlq_topic
        self.topics = [topic, anomalies_topic, incidents_topic, dlq_topic]
        self.message_trades = message_trades
        self.partitions, self.replication_factor = partitions, replication_factor
        self._partitions: dict[str, int] = {}  # symbol -> its partition (see _partition)
        self.compression = None if compression == "none" else compression
        self.linger_ms, self.window, self.client_id = linger_ms, window, client_id
        self._producer: AIOKafkaProducer | None = None
        self._pending: deque[Any] = deque()
        self._handing: asyncio.Future[None] | None = None  # see publish
        self.sent = Sent()

    async def __aenter__(self) -> KafkaTradePublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap, client_id=self.client_id,
                enable_idempotence=True, acks="all",  # no loss and no duplicates on retry
                linger_ms=self.linger_ms, max_batch_size=MAX_BATCH_BYTES, compression_type=self.compression)
        except RuntimeError as exc:  # aiokafka: "Compression library for zstd not found"
            raise ConfigError(f"{exc} (aiokafka needs the cramjam package for snappy, lz4 and zstd)") from exc
        try:
            await self.ensure_topics()  # once the settings are known to be usable: no topics for a failed start
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            try:
                await self.flush()
            finally:
                await self._producer.stop()
                self._producer = None

    async def ensure_topics(self) -> None:
        """The topics created when missing, refused when their partition count differs."""
        await ensure_topics(self.bootstrap, self.topics, self.partitions, self.replication_factor,
                            client_id=self.client_id)

    async def publish(self, runs: SymbolRuns, mark: IngestMark | None = None,
                      dead_letters: Sequence[DeadLetter] = ()) -> None:
        """The runs of each partition packed into messages of up to `message_trades` trades
        (docs/wire-format.md, `STB2`), sent to that partition: one message per partition and tick
        at market scale instead of one per symbol. A run never spans messages unless it is longer.
        Each message, and each of `dead_letters`, carries `mark` as its `stockanomaly-ingest` header
        (adapters.kafka.marks). `dead_letters` are queued right after the first message (alone when
        there is none)."""
        messages: Iterator[tuple[int, bytes, int]] = iter(())
        if len(runs):
            home = np.array([self._partition(name) for name in runs.names], np.int64)[runs.codes]
            home[runs.lengths == 0] = -1  # a message of no trades would be an `empty_batch` dead letter
            messages = encode_runs(runs, home, self.message_trades)
        headers = None if mark is None else [mark_header(mark, self.partitions)]
        if dead_letters:
            # One step, finished even if the ingest is cancelled meanwhile (flush waits for it): the
            # topic then holds the first message if and only if it holds the letters, which is how a
            # resumed ingest tells whether they went (application.resume).
            self._handing = asyncio.ensure_future(self._hand(next(messages, None), headers, dead_letters))
            await asyncio.shield(self._handing)
            self._handing = None
            await self._bound()
        for partition, value, trades in messages:
            await self._send(self.topic, key=None, value=value, headers=headers, partition=partition, trades=trades)

    async def _hand(self, first: tuple[int, bytes, int] | None, headers: list[tuple[str, bytes]] | None,
                    dead_letters: Sequence[DeadLetter]) -> None:
        if first is not None:
            partition, value, trades = first
            await self._queue(self.topic, key=None, value=value, headers=headers, partition=partition, trades=trades)
        for letter in dead_letters:
            key, value, letter_headers = dead_letter_record(letter)
            await self._queue(self.dlq_topic, key=key, value=value, headers=letter_headers + (headers or []),
                              dead_letters=1)

    def _partition(self, symbol: str) -> int:
        """`partition_of`, remembered: Kafka's murmur2 in Python costs microseconds a symbol, and a
        market's symbols come back in every batch."""
        known = self._partitions.get(symbol)
        if known is None:
            known = self._partitions[symbol] = partition_of(symbol, self.partitions)
        return known

    async def publish_dead_letters(self, dead_letters: Sequence[DeadLetter], mark: IngestMark | None = None) -> None:
        marked = [] if mark is None else [mark_header(mark, self.partitions)]
        for letter in dead_letters:
            key, value, headers = dead_letter_record(letter)
            await self._send(self.dlq_topic, key=key, value=value, headers=headers + marked, dead_letters=1)

    async def flush(self) -> None:
        producer = self._require_started()
        handing, self._handing = self._handing, None
        if handing is not None:  # a cancelled publish's first message and letters, still being queued
            await asyncio.wait([handing])
            if not handing.cancelled():
                handing.exception()  # raised to the publish, if it was still there; the flush says the rest
        await producer.flush()
        # Every delivery read, also after one failed: with the broker gone past the client's patience
        # they all fail, and each left unread was one "Future exception was never retrieved" on stderr.
        failed: BaseException | None = None
        while self._pending:
            try:
                await self._pending.popleft()
            except Exception as exc:  # noqa: BLE001 - the first is raised once the rest are read
                failed = failed or exc
        if failed is not None:
            raise failed

    async def _send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None,
                    partition: int | None = None, trades: int = 0, dead_letters: int = 0) -> None:
        await self._queue(topic, key, value, headers, partition, trades, dead_letters)
        await self._bound()

    async def _queue(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None,
                     partition: int | None = None, trades: int = 0, dead_letters: int = 0) -> None:
        producer = self._require_started()
        self._pending.append(await producer.send(topic, value=value, key=key, headers=headers, partition=partition))
        # In the producer's buffer now, so delivered by the next flush even if this call is cancelled.
        sent = self.sent
        if trades:
            sent.trades, sent.messages, sent.bytes = sent.trades + trades, sent.messages + 1, sent.bytes + len(value)
        sent.dead_letters += dead_letters

    async def _bound(self) -> None:
        """Wait for the oldest messages until at most `window` are unacknowledged."""
        while len(self._pending) > self.window:
            await self._pending.popleft()

    def _require_started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaTradePublisher is not started (use `async with` or `await start()`)")
        return self._producer

    def __repr__(self) -> str:
        return f"KafkaTradePublisher({self.bootstrap!r}, topic={self.topic!r}, dlq_topic={self.dlq_topic!r})"
