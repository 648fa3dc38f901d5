"""Bulk-write bookkeeping shared by the sync and async sinks: buffer, outcome per document, backoff.

Pure decisions only (no client, no clock): the sinks own the I/O and the waiting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.elasticsearch.mapping import ANOMALIES, DocumentKind, index_action
from domain.model import Anomaly

WRITTEN, RETRY, FAILED, FATAL = "written", "retry", "failed", "fatal"


def is_transient_status(status: int) -> bool:
    """Overload (429) and server errors pass; any other 4xx says the request itself is wrong."""
    return status == 429 or status >= 500


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by a total time budget per flush."""

    initial_delay: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 10.0
    total: float = 120.0
    jitter: float = 0.2

    def delay(self, attempt: int, elapsed: float, rand: float = 0.5) -> float | None:
        """Seconds to wait after failed attempt number `attempt` (0-based), or None when the budget
        is spent. The last wait is cut to the budget so one final attempt lands on the deadline."""
        remaining = self.total - elapsed
        if remaining <= 0:
            return None
        base = min(self.max_delay, self.initial_delay * self.multiplier ** attempt)
        return min(remaining, base * (1 - self.jitter + 2 * self.jitter * rand))


@dataclass(frozen=True, slots=True)
class FailedAnomaly:
    """An anomaly Elasticsearch rejected for good (mapping error...): to dead-letter, not retry."""

    anomaly: Anomaly
    status: int
    reason: str


@dataclass(slots=True)
class SinkCounters:
    written: int = 0
    retries: int = 0
    failed: int = 0


def error_text(error: Any) -> str:
    """A bulk item error (a dict from Elasticsearch, or a message string) as one line."""
    if isinstance(error, Mapping):
        text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        return f"{text} (caused by {error_text(cause)})" if cause else text
    return str(error)


def outcome(ok: bool, item: Mapping[str, Any]) -> tuple[str, str, int, str]:
    """(kind, _id, status, reason) of one result of streaming_bulk(raise_on_error=False,
    raise_on_exception=False). Results carrying `exception` come from a whole request that failed."""
    ((_, info),) = item.items()
    status = int(info.get("status", 500))
    doc_id = str(info.get("_id", ""))
    if ok:
        return WRITTEN, doc_id, status, ""
    reason = error_text(info.get("error"))
    if is_transient_status(status):
        return RETRY, doc_id, status, reason
    return (FATAL if "exception" in info else FAILED), doc_id, status, reason


class AnomalyBuffer:
    """Anomalies (or incidents: `kind`) waiting to be written, keyed by id (a re-published one
    replaces itself)."""

    def __init__(self, index_prefix: str, kind: DocumentKind = ANOMALIES) -> None:
        self.index_prefix = index_prefix
        self.kind = kind
        self.pending: dict[str, Anomaly] = {}
        self.counters = SinkCounters()
        self.failed: list[FailedAnomaly] = []

    def add(self, anomalies: Sequence[Anomaly]) -> None:
        for a in anomalies:
            self.pending[a.id] = a

    def actions(self, ingested_at: datetime) -> list[dict[str, Any]]:
        return [index_action(self.index_prefix, a, ingested_at, self.kind) for a in list(self.pending.values())]

    def record(self, ok: bool, item: Mapping[str, Any]) -> tuple[int, str] | None:
        """Record one bulk result as it streams in; returns (status, reason) when Elasticsearch
        refused the whole request, which the caller raises (retrying would not help)."""
        kind, doc_id, status, reason = outcome(ok, item)
        if kind == WRITTEN:
            if self.pending.pop(doc_id, None) is not None:
                self.counters.written += 1
        elif kind == FAILED:
            anomaly = self.pending.pop(doc_id, None)
            if anomaly is not None:
                self.failed.append(FailedAnomaly(anomaly, status, reason))
                self.counters.failed += 1
        elif kind == FATAL:
            return status, reason
        return None

    def drain_failed(self) -> list[FailedAnomaly]:
        failed, self.failed = self.failed, []
        return failed
