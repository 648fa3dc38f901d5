"""AsyncElasticsearchAnomalySink: the asyncio twin of ElasticsearchAnomalySink, for the Faust indexer."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog
from elasticsearch import ApiError, AsyncElasticsearch, ConnectionTimeout
from elasticsearch import ConnectionError as EsConnectionError
from elasticsearch.helpers import async_streaming_bulk

from adapters.elasticsearch.bulk import RetryPolicy
from adapters.elasticsearch.mapping import ANOMALIES, DEFAULT_INDEX_PREFIX, DocumentKind
from adapters.elasticsearch.sink import SinkCore, transient_reason, utc_now
from domain.model import Anomaly

log = structlog.get_logger()

AsyncBulkResults = AsyncIterable[tuple[bool, Mapping[str, Any]]]


class AsyncElasticsearchAnomalySink(SinkCore):
    """Same contract as ElasticsearchAnomalySink with `await publish/flush/close`. Waiting between
    retries yields to the event loop; a lock keeps concurrent flushes from sending a batch twice."""

    def __init__(self, client: AsyncElasticsearch, *, index_prefix: str = DEFAULT_INDEX_PREFIX,
                 retry: RetryPolicy = RetryPolicy(), flush_size: int = 5000, chunk_size: int = 1000,
                 replicas: int = 1, refresh_interval: str = "1s", refresh: bool | str = False,
                 close_client: bool = True, bulk: Callable[..., AsyncBulkResults] = async_streaming_bulk,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = utc_now,
                 rand: Callable[[], float] = random.random, kind: DocumentKind = ANOMALIES) -> None:
        super().__init__(index_prefix, retry, flush_size, chunk_size, replicas, refresh_interval, refresh, now, rand,
                         kind)
        self.client = client
        self._close_client = close_client
        self._bulk = bulk
        self._sleep = sleep
        self._clock = clock
        self._lock = asyncio.Lock()

    async def ensure_template(self) -> None:
        if not self.template_installed:
            await self.client.indices.put_index_template(name=self.index_prefix, **self.template)
            self.template_installed = True
            log.info("elasticsearch_template_installed", template=self.index_prefix)

    async def publish(self, anomalies: Sequence[Anomaly]) -> None:
        self.buffer.add(anomalies)
        if self.pending >= self.flush_size:
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            await self._flush()

    async def _flush(self) -> None:
        started, written = self._clock(), self.counters.written
        attempt = 0
        while self.buffer.pending:
            try:
                await self.ensure_template()
                async for ok, item in self._bulk(self.client, self.buffer.actions(self._now()),
                                                 **self.bulk_options):
                    self._check(self.buffer.record(ok, item))
                if not self.buffer.pending:
                    self._written(attempt, started, self._clock(), written)
                    return
                reason = "documents answered 429/5xx"
            except (ApiError, EsConnectionError, ConnectionTimeout) as exc:
                reason = transient_reason(exc) or ""
                if not reason:
                    raise self._refused(exc) from exc
            await self._sleep(self._next_wait(attempt, started, self._clock(), reason))
            attempt += 1

    async def close(self, flush: bool = True) -> None:
        """Flush (unless told not to: what is still buffered is then dropped) and close the client."""
        try:
            if flush:
                await self.flush()
        finally:
            if self._close_client:
                await self.client.close()
