"""PrometheusMetrics: the Metrics port as prometheus_client counters, gauges and histograms."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

# Per detect call: a worker take is ~1-256 messages of up to 2,000 trades; a replay batch at most 262,144.
BATCH_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_TRADES_BUCKETS = (1, 10, 100, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 262_144, 1_000_000)


# The metric families each kind of process exports. Each exports only its own: a series at 0 from an
# indexer would stand in for workers that are gone (StockanomalyTradesStopped reads `market_open` and
# `trades_processed`). The indexer's dead letters (bad_anomaly, bad_incident, index_rejected) share
# the workers' family. Lag is a family per kind: the workers' alerts sum and count `consumer_lag` as
# the trades partitions' (every process may be scraped under one job), and an indexer behind on the
# anomalies topic is another matter, with another runbook.
EXPORTS: dict[str, frozenset[str]] = {
    "detector": frozenset({"trades_processed", "anomalies", "dead_letters", "batch_seconds", "batch_trades",
                           "model_refits", "state_symbols", "consumer_lag", "market_open", "partition_stalled",
                           "event_loop_blocked"}),
    "indexer": frozenset({"dead_letters", "elasticsearch_writes", "elasticsearch_retries",
                          "elasticsearch_failures", "elasticsearch_indices_deleted", "event_loop_blocked",
                          "indexer_lag", "indexer_stalled"}),
    "notifier": frozenset({"notifications", "webhook_retries", "notifier_lag", "notifier_stalled",
                           "event_loop_blocked"}),
}


def process_registry() -> CollectorRegistry:
    """A fresh registry with the process, platform and GC collectors the default one would have."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def parse_symbols(spec: str | Iterable[str]) -> frozenset[str]:
    """`"NVDA, aapl"` -> {"NVDA", "AAPL"}: the symbols allowed to become a label value."""
    names = spec.split(",") if isinstance(spec, str) else spec
    return frozenset(n.strip().upper() for n in names if n.strip())


class PrometheusMetrics:
    """Every metric lives on the injected registry (tests pass a fresh one).

    Cardinality is bounded by configuration: anomalies carry a `symbol` label only for symbols in
    `symbols`; every other symbol gets the empty value, which Prometheus stores as no label at all.
    Series for the known detectors (each allow-listed symbol's too) and dead-letter reasons exist from
    the start at 0, so the first anomalies or dead letters after a (re)start show up in rate() instead
    of being the series' first sample. `exports` names the kind of process (`EXPORTS`): only its
    families are registered, the others count into nothing.
    """

    def __init__(self, registry: CollectorRegistry, *, symbols: Iterable[str] = (),
                 detectors: Iterable[str] = (), reasons: Iterable[str] = (), namespace: str = "stockanomaly",
                 exports: str = "detector", clock: Callable[[], float] = time.monotonic) -> None:
        if exports not in EXPORTS:
            raise ValueError(f"exports must be one of {sorted(EXPORTS)}, got {exports!r}")
        self.symbols = parse_symbols(symbols)
        ns = namespace
        own = EXPORTS[exports]

        def registry_of(name: str) -> CollectorRegistry | None:
            return registry if name in own else None

        self.trades = Counter("trades_processed", "Trades that went through the detectors.",
                              namespace=ns, registry=registry_of("trades_processed"))
        self.anomalies = Counter("anomalies", "Anomalies emitted, per detector (and allow-listed symbol).",
                                 ["detector", "symbol"], namespace=ns, registry=registry_of("anomalies"))
        self.dead = Counter("dead_letters", "Records sent to the dead-letter topic, per reason.",
                            ["reason"], namespace=ns, registry=registry_of("dead_letters"))
        self.batch_seconds = Histogram("batch_seconds", "Seconds per detect call (load state, detect, save).",
                                       namespace=ns, registry=registry_of("batch_seconds"),
                                       buckets=BATCH_SECONDS_BUCKETS)
        self.batch_trades = Histogram("batch_trades", "Trades per detect call.", namespace=ns,
                                      registry=registry_of("batch_trades"), buckets=BATCH_TRADES_BUCKETS)
        self.refits = Counter("model_refits", "Models (re)fitted by learning detectors.", ["detector"],
                              namespace=ns, registry=registry_of("model_refits"))
        self.symbols_held = Gauge("state_symbols", "Symbols whose detector state this process holds.",
                                  namespace=ns, registry=registry_of("state_symbols"))
        # kind: anomalies or incidents (the indexer writes both, each with its own sink).
        self.es_written = Counter("elasticsearch_writes", "Documents written to Elasticsearch.", ["kind"],
                                  namespace=ns, registry=registry_of("elasticsearch_writes"))
        self.es_retries = Counter("elasticsearch_retries", "Elasticsearch bulk attempts that were retried.",
                                  ["kind"], namespace=ns, registry=registry_of("elasticsearch_retries"))
        self.es_failed = Counter("elasticsearch_failures", "Documents Elasticsearch rejected for good.", ["kind"],
                                 namespace=ns, registry=registry_of("elasticsearch_failures"))
        for kind in ("anomalies", "incidents"):  # exported at 0 from the start: rules compare them
            for counter in (self.es_written, self.es_retries, self.es_failed):
                counter.labels(kind)
        self.lag = Gauge("consumer_lag", "Messages between the last processed offset and the end, per partition.",
                         ["partition"], namespace=ns, registry=registry_of("consumer_lag"))
        self._lag_partitions: set[str] = set()
        self.stalled = Gauge("partition_stalled_seconds", "Seconds a partition owned here has had messages waiting "
                             "while none was processed (0: caught up or moving on).", ["partition"], namespace=ns,
                             registry=registry_of("partition_stalled"))
        self._stalled_partitions: set[str] = set()
        # The indexer's and the notifier's, per topic read (anomalies, incidents) and partition owned.
        self.indexer_behind = Gauge("indexer_lag", "Messages of a topic's partition after the last one the indexer "
                                    "wrote to Elasticsearch.", ["topic", "partition"], namespace=ns,
                                    registry=registry_of("indexer_lag"))
        self.indexer_stalled = Gauge("indexer_stalled_seconds", "Seconds a partition the indexer owns has had "
                                     "messages waiting while none was written (0: caught up or moving on).",
                                     ["topic", "partition"], namespace=ns, registry=registry_of("indexer_stalled"))
        self.notifier_behind = Gauge("notifier_lag", "Messages of a topic's partition after the last one the "
                                     "notifier handled.", ["topic", "partition"], namespace=ns,
                                     registry=registry_of("notifier_lag"))
        self.notifier_stalled = Gauge("notifier_stalled_seconds", "Seconds a partition the notifier owns has had "
                                      "messages waiting while none was handled (0: caught up or moving on).",
                                      ["topic", "partition"], namespace=ns, registry=registry_of("notifier_stalled"))
        self._reported: dict[tuple[str, str], set[str]] = {}  # (family, topic) -> partitions reported
        # Measured when /metrics is read (in the endpoint's own thread), from the last beat of the
        # event loop: a loop blocked by a call that never returns stops beating, and every other
        # gauge stops moving with it. 0 until the first beat (the loop has not started).
        self._clock: Callable[[], float] = clock
        self._beat: float | None = None
        self.loop_blocked = Gauge("event_loop_blocked_seconds", "Seconds since the event loop last ran its "
                                  "once-a-second beat (about 0-1 while it runs).", namespace=ns,
                                  registry=registry_of("event_loop_blocked"))
        self.loop_blocked.set_function(lambda: 0.0 if self._beat is None else round(self._clock() - self._beat, 3))
        self.session = Gauge("market_open", "1 while the exchange's regular session is on (New York time, "
                             "trading days), else 0: when trades are expected to flow.", namespace=ns,
                             registry=registry_of("market_open"))
        # The notifier's (stockanomaly notify), each result exported at 0 from the start.
        self.notified = Counter("notifications", "Records the notifier handled, by result: sent, held_back "
                                "(per-symbol limit), below_severity, refused (a webhook said no for good).",
                                ["result"], namespace=ns, registry=registry_of("notifications"))
        for result in ("sent", "held_back", "below_severity", "refused"):
            self.notified.labels(result)
        self.webhook_retries = Counter("webhook_retries", "Webhook posts retried (receiver down, 408, 429 or 5xx).",
                                       namespace=ns, registry=registry_of("webhook_retries"))
        self.expired = Counter("elasticsearch_indices_deleted", "Daily indices deleted for having outlived "
                               "the retention (STOCKANOMALY_ES_RETENTION_DAYS).", namespace=ns,
                               registry=registry_of("elasticsearch_indices_deleted"))
        for detector in detectors:
            for label in ("", *sorted(self.symbols)):  # the allow-listed symbols' series too
                self.anomalies.labels(detector=detector, symbol=label)
            self.refits.labels(detector=detector)
        for reason in reasons:  # so a process's first dead letters show in rate(), not as a new series
            self.dead.labels(reason=reason)

    def trades_processed(self, count: int) -> None:
        self.trades.inc(count)

    def anomalies_found(self, detector: str, symbol: str, count: int) -> None:
        label = symbol if symbol.upper() in self.symbols else ""
        self.anomalies.labels(detector=detector, symbol=label).inc(count)

    def dead_letters(self, reason: str, count: int) -> None:
        self.dead.labels(reason=reason).inc(count)

    def batch_processed(self, size: int, seconds: float) -> None:
        self.batch_seconds.observe(seconds)
        self.batch_trades.observe(size)

    def model_refitted(self, detector: str) -> None:
        self.refits.labels(detector=detector).inc()

    def state_symbols(self, count: int) -> None:
        self.symbols_held.set(count)

    def notifications(self, result: str, count: int, retries: int = 0) -> None:
        self.notified.labels(result).inc(count)
        self.webhook_retries.inc(retries)

    def indices_deleted(self, count: int) -> None:
        self.expired.inc(count)

    def elasticsearch_bulk(self, written: int, retries: int, failed: int, kind: str = "anomalies") -> None:
        self.es_written.labels(kind).inc(written)
        self.es_retries.labels(kind).inc(retries)
        self.es_failed.labels(kind).inc(failed)

    def consumer_lag(self, lags: Mapping[int, int]) -> None:
        self._lag_partitions = _per_partition(self.lag, lags, self._lag_partitions)

    def partition_stalled(self, seconds: Mapping[int, float]) -> None:
        self._stalled_partitions = _per_partition(self.stalled, seconds, self._stalled_partitions)

    def indexer_lag(self, topic: str, lags: Mapping[int, int], stalled: Mapping[int, float]) -> None:
        self._per_topic("indexer_lag", self.indexer_behind, topic, lags)
        self._per_topic("indexer_stalled", self.indexer_stalled, topic, stalled)

    def notifier_lag(self, topic: str, lags: Mapping[int, int], stalled: Mapping[int, float]) -> None:
        self._per_topic("notifier_lag", self.notifier_behind, topic, lags)
        self._per_topic("notifier_stalled", self.notifier_stalled, topic, stalled)

    def _per_topic(self, family: str, gauge: Gauge, topic: str, values: Mapping[int, float]) -> None:
        """One series per partition of `topic` owned now; those handed over are removed (as `_per_partition`)."""
        key = (family, topic)
        owned = {str(p): value for p, value in values.items()}
        for gone in self._reported.get(key, set()) - owned.keys():
            gauge.remove(topic, gone)
        for partition, value in owned.items():
            gauge.labels(topic=topic, partition=partition).set(value)
        self._reported[key] = set(owned)

    def event_loop_beat(self) -> None:
        self._beat = self._clock()

    def market_open(self, is_open: bool) -> None:
        self.session.set(1 if is_open else 0)


def _per_partition(gauge: Gauge, values: Mapping[int, float], reported: set[str]) -> set[str]:
    """Set one series per partition owned now; returns their labels. A partition handed to another
    worker stops being reported here, or two workers would both claim it (and a stale value would
    never move again)."""
    owned = {str(p): value for p, value in values.items()}
    for gone in reported - owned.keys():
        gauge.remove(gone)
    for partition, value in owned.items():
        gauge.labels(partition=partition).set(value)
    return set(owned)
