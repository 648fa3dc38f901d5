"""KafkaTradePublisher: the TradePublisher over one long-lived, idempotent aiokafka producer."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

from adapters.kafka.codec import encode_batch
from domain.errors import ConfigError
from domain.model import DeadLetter

log = structlog.get_logger()

COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
TOPIC_ALREADY_EXISTS = 36
# A record batch must fit the broker's message.max.bytes (1 MiB by default) after compression.
MAX_BATCH_BYTES = 1_000_000
DETAIL_HEADER_BYTES = 4096


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    return [("reason", letter.reason.encode()), ("detail", letter.detail.encode()[:DETAIL_HEADER_BYTES]),
            ("origin", letter.origin.encode())]


async def _await_leaders(admin: AIOKafkaAdminClient, topics: list[str], timeout: float = 15.0) -> None:
    """Wait (bounded) until every partition of new topics has a leader: sends before that are
    refused with NotLeaderForPartition and only succeed on retry."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        described = await admin.describe_topics(topics)
        if all(t["error_code"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"])
               for t in described):
            return
        await asyncio.sleep(0.05)
    log.warning("topic_leaders_pending", topics=topics, waited_seconds=timeout)


class KafkaTradePublisher:
    """Trade batches to `topic` keyed by symbol (so one symbol stays on one partition, in order);
    dead letters to `dlq_topic` (value = the raw record, headers reason/detail/origin).

    Sends are pipelined: `publish` returns once the message is queued in the producer, keeping up
    to `window` messages unacknowledged; the oldest is awaited when the window is full, so a
    delivery error surfaces within `window` messages and memory stays bounded.
    """

    def __init__(self, bootstrap: str, topic: str = "trades", dlq_topic: str = "trades.dlq", *,
                 partitions: int = 4, replication_factor: int = 1, compression: str = "none",
                 linger_ms: int = 5, window: int = 512, client_id: str = "stockanomaly-ingest") -> None:
        if compression not in COMPRESSIONS:
            raise ConfigError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
        self.bootstrap, self.topic, self.dlq_topic = bootstrap, topic, dlq_topic
        self.partitions, self.replication_factor = partitions, replication_factor
        self.compression = None if compression == "none" else compression
        self.linger_ms, self.window, self.client_id = linger_ms, window, client_id
        self._producer: AIOKafkaProducer | None = None
        self._pending: deque[Any] = deque()

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
        """Create the trades and dead-letter topics when missing; existing topics are left as they are."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=self.client_id)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [NewTopic(name, self.partitions, self.replication_factor)
                       for name in dict.fromkeys((self.topic, self.dlq_topic)) if name not in existing]
            if not missing:
                return
            response = await admin.create_topics(missing)
            for name, code, *rest in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    message = rest[0] if rest and rest[0] else for_code(code).__name__
                    raise KafkaError(f"creating topic {name}: {message}")
            log.info("topics_created", topics=[t.name for t in missing], partitions=self.partitions)
            await _await_leaders(admin, [t.name for t in missing])
        finally:
            await admin.close()

    async def publish(self, symbol: str, trades: np.ndarray) -> int:
        if not len(trades):
            return 0  # a message of no trades would be an `empty_batch` dead letter
        key, value = encode_batch(symbol, trades)
        await self._send(self.topic, key=key, value=value)
        return len(value)

    async def publish_dead_letters(self, dead_letters: Sequence[DeadLetter]) -> None:
        for letter in dead_letters:
            await self._send(self.dlq_topic, key=None, value=letter.raw, headers=dead_letter_headers(letter))

    async def flush(self) -> None:
        producer = self._require_started()
        await producer.flush()
        while self._pending:
            await self._pending.popleft()

    async def _send(self, topic: str, key: bytes | None, value: bytes,
                    headers: list[tuple[str, bytes]] | None = None) -> None:
        producer = self._require_started()
        self._pending.append(await producer.send(topic, value=value, key=key, headers=headers))
        while len(self._pending) > self.window:
            await self._pending.popleft()

    def _require_started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("KafkaTradePublisher is not started (use `async with` or `await start()`)")
        return self._producer

    def __repr__(self) -> str:
        return f"KafkaTradePublisher({self.bootstrap!r}, topic={self.topic!r}, dlq_topic={self.dlq_topic!r})"
