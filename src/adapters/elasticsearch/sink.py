"""ElasticsearchAnomalySink: buffered, idempotent, retried bulk writes of anomalies (sync)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import structlog
from elasticsearch import ApiError, ConnectionTimeout, Elasticsearch
from elasticsearch import ConnectionError as EsConnectionError
from elasticsearch.helpers import streaming_bulk

from adapters.elasticsearch.bulk import AnomalyBuffer, FailedAnomaly, RetryPolicy, SinkCounters, is_transient_status
from adapters.elasticsearch.errors import ElasticsearchRejected, ElasticsearchUnavailable
from adapters.elasticsearch.mapping import ANOMALIES, DEFAULT_INDEX_PREFIX, DocumentKind, check_prefix, index_template
from domain.model import Anomaly

log = structlog.get_logger()

BulkResults = Iterable[tuple[bool, Mapping[str, Any]]]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def transient_reason(exc: Exception) -> str | None:
    """Why a failed request is worth retrying (unreachable, timed out, 429, 5xx), else None."""
    if isinstance(exc, (EsConnectionError, ConnectionTimeout)):
        return f"{type(exc).__name__}: {exc}"[:300]
    if isinstance(exc, ApiError) and is_transient_status(exc.meta.status):
        return f"HTTP {exc.meta.status}: {exc.message}"[:300]
    return None


class SinkCore:
    """What both sinks share: the buffer, counters, template body and bulk options."""

    def __init__(self, index_prefix: str, retry: RetryPolicy, flush_size: int, chunk_size: int,
                 replicas: int, refresh_interval: str, refresh: bool | str, now: Callable[[], datetime],
                 rand: Callable[[], float], kind: DocumentKind = ANOMALIES) -> None:
        self.index_prefix = check_prefix(index_prefix)
        self.retry = retry
        self.flush_size = flush_size
        self.kind = kind
        self.template = index_template(self.index_prefix, replicas=replicas, refresh_interval=refresh_interval,
                                       kind=kind)
        self.bulk_options: dict[str, Any] = {
            "chunk_size": chunk_size, "max_chunk_bytes": 10 * 1024 * 1024, "raise_on_error": False,
            "raise_on_exception": False, "max_retries": 0, "yield_ok": True}
        if refresh:
            self.bulk_options["refresh"] = refresh
        self.buffer = AnomalyBuffer(self.index_prefix, kind)
        self.template_installed = False
        self._now = now
        self._rand = rand

    @property
    def counters(self) -> SinkCounters:
        return self.buffer.counters

    @property
    def failed(self) -> list[FailedAnomaly]:
        return self.buffer.failed

    @property
    def pending(self) -> int:
        return len(self.buffer.pending)

    def drain_failed(self) -> list[FailedAnomaly]:
        """Rejected anomalies since the last call, for the caller to dead-letter."""
        return self.buffer.drain_failed()

    def _refused(self, exc: Exception) -> ElasticsearchRejected:
        status = exc.meta.status if isinstance(exc, ApiError) else 0
        return ElasticsearchRejected(f"Elasticsearch refused the request: {exc}"[:500], status)

    def _check(self, refusal: tuple[int, str] | None) -> None:
        if refusal is not None:
            status, reason = refusal
            raise ElasticsearchRejected(f"Elasticsearch refused a bulk request: HTTP {status}: {reason}"[:500],
                                        status)

    def _next_wait(self, attempt: int, started: float, now: float, reason: str) -> float:
        delay = self.retry.delay(attempt, now - started, self._rand())
        if delay is None:
            log.error("elasticsearch_bulk_gave_up", pending=self.pending, attempts=attempt + 1,
                      seconds=round(now - started, 1), error=reason)
            raise ElasticsearchUnavailable(
                f"{self.pending} {self.kind.name} not written to Elasticsearch after {now - started:.0f}s "
                f"and {attempt + 1} attempts ({reason}); they stay buffered", self.pending)
        self.buffer.counters.retries += 1
        log.warning("elasticsearch_bulk_retry", attempt=attempt + 1, delay_s=round(delay, 2),
                    pending=self.pending, error=reason)
        return delay

    def _written(self, attempt: int, started: float, now: float, written_before: int) -> None:
        # After retries: the one line that says the outage is over (it was only warnings, then silence).
        if attempt:
            log.info("elasticsearch_recovered", kind=self.kind.name, attempts=attempt + 1,
                     seconds=round(now - started, 1), written=self.counters.written - written_before)


class ElasticsearchAnomalySink(SinkCore):
    """AnomalySink over Elasticsearch: publish() buffers, flush() bulk-writes with `_id` = anomaly id.

    Transient failures (unreachable, timeouts, 429, 5xx) are retried with backoff for up to
    `retry.total` seconds, keeping the batch buffered; after that flush() raises
    ElasticsearchUnavailable and the anomalies stay buffered for the next flush. Documents
    Elasticsearch rejects (mapping errors) land in `failed` with the reason, for dead-lettering.
    Not thread-safe.
    """

    def __init__(self, client: Elasticsearch, *, index_prefix: str = DEFAULT_INDEX_PREFIX,
                 retry: RetryPolicy = RetryPolicy(), flush_size: int = 5000, chunk_size: int = 1000,
                 replicas: int = 1, refresh_interval: str = "1s", refresh: bool | str = False,
                 close_client: bool = True, bulk: Callable[..., BulkResults] = streaming_bulk,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime] = utc_now, rand: Callable[[], float] = random.random) -> None:
        super().__init__(index_prefix, retry, flush_size, chunk_size, replicas, refresh_interval, refresh, now, rand)
        self.client = client
        self._close_client = close_client
        self._bulk = bulk
        self._sleep = sleep
        self._clock = clock

    def ensure_template(self) -> None:
        """Install (or update) the index template; idempotent. flush() calls it first, under retry."""
        if not self.template_installed:
            self.client.indices.put_index_template(name=self.index_prefix, **self.template)
            self.template_installed = True
            log.info("elasticsearch_template_installed", template=self.index_prefix)

    def publish(self, anomalies: Sequence[Anomaly]) -> None:
        self.buffer.add(anomalies)
        if self.pending >= self.flush_size:
            self.flush()

    def flush(self) -> None:
        started, written = self._clock(), self.counters.written
        attempt = 0
        while self.buffer.pending:
            try:
                self.ensure_template()
                for ok, item in self._bulk(self.client, self.buffer.actions(self._now()), **self.bulk_options):
                    self._check(self.buffer.record(ok, item))
                if not self.buffer.pending:
                    self._written(attempt, started, self._clock(), written)
                    return
                reason = "documents answered 429/5xx"
            except (ApiError, EsConnectionError, ConnectionTimeout) as exc:
                reason = transient_reason(exc) or ""
                if not reason:
                    raise self._refused(exc) from exc
            self._sleep(self._next_wait(attempt, started, self._clock(), reason))
            attempt += 1

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._close_client:
                self.client.close()
