"""Metrics kept as plain counters, for tests and for the embedded replay's summary."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping


class InMemoryMetrics:
    def __init__(self) -> None:
        self.trades = 0
        self.anomalies: Counter[tuple[str, str]] = Counter()
        self.dead: Counter[str] = Counter()
        self.batches: list[tuple[int, float]] = []
        self.refits: Counter[str] = Counter()
        self.symbols = 0
        self.elasticsearch: Counter[str] = Counter()
        self.lag: dict[int, int] = {}
        self.stalled: dict[int, float] = {}
        self.beats = 0
        self.session_open: bool | None = None
        self.notified: Counter[str] = Counter()
        # topic -> (lags, stalled) per partition, as last reported
        self.indexer: dict[str, tuple[dict[int, int], dict[int, float]]] = {}
        self.notifier: dict[str, tuple[dict[int, int], dict[int, float]]] = {}

    def trades_processed(self, count: int) -> None:
        self.trades += count

    def anomalies_found(self, detector: str, symbol: str, count: int) -> None:
        self.anomalies[(detector, symbol)] += count

    def dead_letters(self, reason: str, count: int) -> None:
        self.dead[reason] += count

    def batch_processed(self, size: int, seconds: float) -> None:
        self.batches.append((size, seconds))

    def model_refitted(self, detector: str) -> None:
        self.refits[detector] += 1

    def state_symbols(self, count: int) -> None:
        self.symbols = count

    def elasticsearch_bulk(self, written: int, retries: int, failed: int, kind: str = "anomalies") -> None:
        prefix = "" if kind == "anomalies" else f"{kind}_"
        self.elasticsearch.update({f"{prefix}written": written, f"{prefix}retries": retries, f"{prefix}failed": failed})

    def indices_deleted(self, count: int) -> None:
        self.elasticsearch["indices_deleted"] += count

    def consumer_lag(self, lags: Mapping[int, int]) -> None:
        self.lag = dict(lags)

    def market_open(self, is_open: bool) -> None:
        self.session_open = is_open

    def partition_stalled(self, seconds: Mapping[int, float]) -> None:
        self.stalled = dict(seconds)

    def indexer_lag(self, topic: str, lags: Mapping[int, int], stalled: Mapping[int, float]) -> None:
        self.indexer[topic] = (dict(lags), dict(stalled))

    def notifier_lag(self, topic: str, lags: Mapping[int, int], stalled: Mapping[int, float]) -> None:
        self.notifier[topic] = (dict(lags), dict(stalled))

    def event_loop_beat(self) -> None:
        self.beats += 1

    def notifications(self, result: str, count: int, retries: int = 0) -> None:
        self.notified[result] += count
        self.notified["webhook_retries"] += retries
