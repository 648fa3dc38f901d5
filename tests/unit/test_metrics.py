"""Prometheus metrics: what the worker exports, on a fresh registry, and what the use case reports."""

from __future__ import annotations

import re
import socket
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from builders import calm_flow
from prometheus_client import CollectorRegistry

from adapters.elasticsearch.bulk import SinkCounters
from adapters.kafka.lag import PartitionProgress, partition_lags
from adapters.faust.indexer import ElasticsearchTally
from adapters.memory import InMemoryMetrics, InMemoryTradeSource
from adapters.metrics import MetricsServer, PrometheusMetrics, parse_symbols
from domain.model import TRADE_DTYPE
from entrypoints.container import build_container

REPO = Path(__file__).resolve().parents[2]
METRIC_NAME = re.compile(r"\bstockanomaly_[A-Za-z0-9_]*")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Sample names (`x_total`, `h_bucket`, ...) and family names (`h`)."""
    return {n for metric in registry.collect() for n in [metric.name, *(s.name for s in metric.samples)]}


def test_counts_trades_anomalies_and_dead_letters(registry) -> None:
    m = PrometheusMetrics(registry)
    m.trades_processed(1_000)
    m.trades_processed(500)
    m.anomalies_found("high_volume", "NVDA", 2)
    m.dead_letters("bad_price", 3)
    assert value(registry, "stockanomaly_trades_processed_total") == 1_500
    assert value(registry, "stockanomaly_anomalies_total", detector="high_volume", symbol="") == 2
    assert value(registry, "stockanomaly_dead_letters_total", reason="bad_price") == 3


def test_symbol_becomes_a_label_only_when_allow_listed(registry) -> None:
    m = PrometheusMetrics(registry, symbols=parse_symbols("nvda, AAPL,"))
    m.anomalies_found("high_volume", "NVDA", 1)
    m.anomalies_found("high_volume", "TSLA", 4)
    m.anomalies_found("high_volume", "ZZZ", 1)
    assert value(registry, "stockanomaly_anomalies_total", detector="high_volume", symbol="NVDA") == 1
    # Unlisted symbols share the empty label value, which Prometheus stores as no label.
    assert value(registry, "stockanomaly_anomalies_total", detector="high_volume", symbol="") == 5
    assert value(registry, "stockanomaly_anomalies_total", detector="high_volume", symbol="TSLA") is None


def test_known_detectors_start_at_zero_so_the_first_anomaly_shows_in_rate(registry) -> None:
    PrometheusMetrics(registry, detectors=["high_volume", "trade_burst"])
    assert value(registry, "stockanomaly_anomalies_total", detector="trade_burst", symbol="") == 0
    assert value(registry, "stockanomaly_model_refits_total", detector="high_volume") == 0


def test_allow_listed_symbols_start_at_zero_too_so_their_first_anomaly_shows_in_rate(registry) -> None:
    # A series born at 1 is its own first sample: rate() and increase() never see that anomaly.
    m = PrometheusMetrics(registry, symbols=parse_symbols("NVDA,AAPL"), detectors=["high_volume", "trade_burst"])
    for symbol in ("NVDA", "AAPL", ""):
        for detector in ("high_volume", "trade_burst"):
            assert value(registry, "stockanomaly_anomalies_total", detector=detector, symbol=symbol) == 0
    m.anomalies_found("trade_burst", "NVDA", 1)
    assert value(registry, "stockanomaly_anomalies_total", detector="trade_burst", symbol="NVDA") == 1


@pytest.mark.parametrize("kind, present, absent", [
    ("detector", ["bad_json", "bad_encoding", "wrong_partition", "bad_price", "missing_symbol", "duplicate",
                  "out_of_order"], ["bad_anomaly", "index_rejected"]),
    ("indexer", ["bad_anomaly", "bad_incident", "index_rejected"], ["bad_price", "duplicate"]),
])
def test_each_process_exports_its_dead_letter_reasons_at_zero_from_the_start(kind, present, absent) -> None:
    """A worker's first burst of bad records must show in rate(): a series that appears at its
    first increment has no earlier sample to rise from, and the dead-letter alerts read rate()."""
    container = build_container(metrics="prometheus")
    container.config.metrics_exports.from_value(kind)  # as the indexer's entrypoint does
    container.metrics()
    registry = container.metrics_registry()
    for reason in present:
        assert value(registry, "stockanomaly_dead_letters_total", reason=reason) == 0, reason
    for reason in absent:
        assert value(registry, "stockanomaly_dead_letters_total", reason=reason) is None, reason


def test_batches_feed_both_histograms(registry) -> None:
    m = PrometheusMetrics(registry)
    m.batch_processed(2_000, 0.004)
    m.batch_processed(10, 0.0002)
    assert value(registry, "stockanomaly_batch_seconds_count") == 2
    assert value(registry, "stockanomaly_batch_seconds_bucket", le="0.005") == 2
    assert value(registry, "stockanomaly_batch_seconds_bucket", le="0.001") == 1
    assert value(registry, "stockanomaly_batch_trades_sum") == 2_010
    assert value(registry, "stockanomaly_batch_trades_bucket", le="2000.0") == 2


def test_gauges_and_elasticsearch_counters(registry) -> None:
    m = PrometheusMetrics(registry)
    m.model_refitted("isolation_forest")
    m.state_symbols(42)
    assert value(registry, "stockanomaly_model_refits_total", detector="isolation_forest") == 1
    assert value(registry, "stockanomaly_state_symbols") == 42
    registry = CollectorRegistry()
    m = PrometheusMetrics(registry, exports="indexer")
    m.elasticsearch_bulk(written=10, retries=2, failed=1)
    m.elasticsearch_bulk(written=5, retries=0, failed=0)
    m.elasticsearch_bulk(written=3, retries=1, failed=0, kind="incidents")
    assert value(registry, "stockanomaly_elasticsearch_writes_total", kind="anomalies") == 15
    assert value(registry, "stockanomaly_elasticsearch_retries_total", kind="anomalies") == 2
    assert value(registry, "stockanomaly_elasticsearch_failures_total", kind="anomalies") == 1
    assert value(registry, "stockanomaly_elasticsearch_writes_total", kind="incidents") == 3
    assert value(registry, "stockanomaly_elasticsearch_retries_total", kind="incidents") == 1


def test_consumer_lag_forgets_partitions_handed_to_another_worker(registry) -> None:
    m = PrometheusMetrics(registry)
    m.consumer_lag({0: 5, 1: 0})
    m.consumer_lag({1: 7, 2: 3})
    assert value(registry, "stockanomaly_consumer_lag", partition="0") is None
    assert value(registry, "stockanomaly_consumer_lag", partition="1") == 7
    assert value(registry, "stockanomaly_consumer_lag", partition="2") == 3


@pytest.mark.parametrize("kind", ["indexer", "notifier"])
def test_an_indexers_or_notifiers_lag_is_its_own_family_per_topic_and_never_the_workers(kind: str) -> None:
    """Every process may be scraped under one job: the workers' alerts sum and count
    `stockanomaly_consumer_lag` as the trades partitions', so nothing else may report into it."""
    registry = CollectorRegistry()
    m = PrometheusMetrics(registry, exports=kind)
    report = m.indexer_lag if kind == "indexer" else m.notifier_lag
    m.consumer_lag({0: 99})  # a worker's: not this process's to export
    report("anomalies", {0: 5, 1: 0}, {0: 42.0, 1: 0.0})
    report("incidents", {0: 2}, {0: 0.0})
    report("anomalies", {1: 7, 2: 3}, {1: 10.0, 2: 0.0})  # 0 handed to another process, 2 taken over
    assert value(registry, "stockanomaly_consumer_lag", partition="0") is None
    assert value(registry, f"stockanomaly_{kind}_lag", topic="anomalies", partition="0") is None
    assert value(registry, f"stockanomaly_{kind}_stalled_seconds", topic="anomalies", partition="0") is None
    assert value(registry, f"stockanomaly_{kind}_lag", topic="anomalies", partition="1") == 7
    assert value(registry, f"stockanomaly_{kind}_stalled_seconds", topic="anomalies", partition="1") == 10.0
    assert value(registry, f"stockanomaly_{kind}_lag", topic="anomalies", partition="2") == 3
    assert value(registry, f"stockanomaly_{kind}_lag", topic="incidents", partition="0") == 2  # its own topic's
    worker = CollectorRegistry()
    w = PrometheusMetrics(worker, exports="detector")
    w.indexer_lag("anomalies", {0: 5}, {0: 1.0})
    w.notifier_lag("anomalies", {0: 5}, {0: 1.0})
    assert not {n for n in exported_names(worker) if "indexer" in n or "notifier" in n}


def test_each_kind_of_process_exports_only_its_own_metrics() -> None:
    """An indexer's or a notifier's series at 0 must not stand in for workers that are gone: the
    trades-stopped page reads `market_open` and `trades_processed`."""
    exported = {}
    for kind in ("detector", "indexer", "notifier"):
        registry = CollectorRegistry()
        PrometheusMetrics(registry, detectors=["high_volume"], exports=kind).dead_letters("bad_anomaly", 1)
        exported[kind] = {m.name.removeprefix("stockanomaly_") for m in registry.collect()}
    assert {"trades_processed", "market_open", "state_symbols", "anomalies", "dead_letters"} <= exported["detector"]
    assert not exported["detector"] & {"elasticsearch_writes", "notifications"}
    assert exported["indexer"] == {"dead_letters", "elasticsearch_writes", "elasticsearch_retries",
                                   "elasticsearch_failures", "elasticsearch_indices_deleted",
                                   "event_loop_blocked_seconds", "indexer_lag", "indexer_stalled_seconds"}
    assert exported["notifier"] == {"notifications", "webhook_retries", "notifier_lag", "notifier_stalled_seconds",
                                    "event_loop_blocked_seconds"}
    with pytest.raises(ValueError, match="exports must be one of"):
        PrometheusMetrics(CollectorRegistry(), exports="worker")


def test_every_metric_the_rules_and_dashboards_use_is_exported() -> None:
    exported: set[str] = set()
    for kind in ("detector", "indexer", "notifier"):
        registry = CollectorRegistry()
        m = PrometheusMetrics(registry, detectors=["high_volume"], exports=kind)
        m.dead_letters("bad_price", 1)
        m.consumer_lag({0: 0})
        m.partition_stalled({0: 0.0})
        m.indexer_lag("anomalies", {0: 0}, {0: 0.0})
        m.notifier_lag("anomalies", {0: 0}, {0: 0.0})
        exported |= exported_names(registry)
    texts = [p.read_text() for p in (REPO / "deploy" / "prometheus" / "rules").glob("*.yml")]
    texts += [p.read_text() for p in (REPO / "deploy" / "grafana" / "dashboards").glob("*.json")]
    used = {name for text in texts for name in METRIC_NAME.findall(text)}
    assert used and used <= exported, sorted(used - exported)


def test_partition_lags_count_messages_after_the_last_processed_offset() -> None:
    tps = [SimpleNamespace(topic="trades", partition=p) for p in range(3)]
    ends = {0: 100, 1: 50, 2: None}
    lags = partition_lags(lambda tp: ends[tp.partition], tps, {0: 89, 1: 49})
    assert lags == {0: 10, 1: 0}  # partition 2: nothing known yet, so no value rather than 0


def test_partition_stalled_counts_from_the_last_progress_while_messages_wait() -> None:
    now = [100.0]
    progress = PartitionProgress(clock=lambda: now[0])
    assert progress.stalled({0: 5, 1: 0}, {0: 10, 1: 20}) == {0: 0.0, 1: 0.0}  # first seen: counts from now
    now[0] = 130.0
    assert progress.stalled({0: 9, 1: 0}, {0: 10, 1: 20}) == {0: 30.0, 1: 0.0}  # 0 stuck at offset 10
    now[0] = 140.0
    # 0 moved on; 1 has messages waiting, since it was last seen caught up (130 s) at most
    assert progress.stalled({0: 9, 1: 4}, {0: 12, 1: 20}) == {0: 0.0, 1: 10.0}
    now[0] = 150.0
    assert progress.stalled({0: 2, 1: 4}, {0: 12, 1: 20}) == {0: 10.0, 1: 20.0}
    assert progress.stalled({1: 4}, {1: 20}) == {1: 20.0}  # 0 revoked: forgotten
    assert progress.stalled({0: 2}, {0: 12}) == {0: 0.0}  # back again: counts afresh


def test_stalled_partitions_are_exported_per_partition_and_forgotten_when_handed_over(registry) -> None:
    m = PrometheusMetrics(registry)
    m.partition_stalled({0: 12.5, 1: 0.0})
    m.partition_stalled({1: 3.0})
    assert value(registry, "stockanomaly_partition_stalled_seconds", partition="0") is None
    assert value(registry, "stockanomaly_partition_stalled_seconds", partition="1") == 3.0


def test_event_loop_blocked_is_measured_when_scraped_from_the_last_beat(registry) -> None:
    now = [50.0]
    m = PrometheusMetrics(registry, clock=lambda: now[0])
    assert value(registry, "stockanomaly_event_loop_blocked_seconds") == 0.0  # no beat yet: not started
    m.event_loop_beat()
    now[0] = 50.4
    assert value(registry, "stockanomaly_event_loop_blocked_seconds") == pytest.approx(0.4)
    now[0] = 171.0  # no beat for two minutes: the loop is blocked, and the value says for how long
    assert value(registry, "stockanomaly_event_loop_blocked_seconds") == pytest.approx(121.0)
    m.event_loop_beat()
    assert value(registry, "stockanomaly_event_loop_blocked_seconds") == 0.0


def test_the_notifiers_loop_blocked_gauge_rises_while_its_loop_is_blocked_and_falls_once_it_runs(registry) -> None:
    """`stockanomaly notify` beats from its own loop (adapters.metrics.beat), as the worker's and the
    indexer's Faust timers do: a notifier whose loop a synchronous call holds was invisible."""
    import asyncio

    from adapters.metrics.beat import beat_while_running

    now = [50.0]
    m = PrometheusMetrics(registry, exports="notifier", clock=lambda: now[0])

    def blocked() -> float | None:  # as the metrics endpoint's thread reads it
        return value(registry, "stockanomaly_event_loop_blocked_seconds")

    async def go() -> list[float | None]:
        beaten = asyncio.Event()

        def beat() -> None:
            m.event_loop_beat()
            beaten.set()

        beating = asyncio.ensure_future(beat_while_running(beat, seconds=0.01))
        try:
            await asyncio.wait_for(beaten.wait(), 5)
            now[0] = 50.5
            seen = [blocked()]
            beaten.clear()
            now[0] = 200.0  # the loop held by a call for 150 s: nothing here awaits, so no beat comes
            seen.append(blocked())
            await asyncio.wait_for(beaten.wait(), 5)  # the loop runs again: its next beat
            seen.append(blocked())
            return seen
        finally:
            beating.cancel()

    assert asyncio.run(go()) == [pytest.approx(0.5), pytest.approx(150.0), 0.0]


def test_elasticsearch_tally_reports_increments_of_the_sink_counters() -> None:
    sink = SimpleNamespace(counters=SinkCounters())
    metrics = InMemoryMetrics()
    tally = ElasticsearchTally(sink, metrics)
    sink.counters.written, sink.counters.retries = 10, 1
    tally.report()
    sink.counters.written = 25
    tally.report()
    tally.report()  # nothing new
    assert metrics.elasticsearch == {"written": 25, "retries": 1, "failed": 0}


def test_replay_reports_trades_batches_and_model_refits() -> None:
    trades = np.concatenate([calm_flow(15_000, symbol=s, seed=i) for i, s in enumerate(["AAA", "BBB"])])
    trades = trades.astype(TRADE_DTYPE)[np.argsort(trades["ts_event"], kind="stable")]
    late = np.arange(20_000, 30_000, 1_000)  # past the first half-hour epoch: the pools have a model
    trades["size"][late] *= 100  # scored by the Isolation Forest, so each pool's model gets fitted
    container = build_container()
    container.replay()(InMemoryTradeSource(trades, chunk_size=3_000))
    metrics = container.metrics()
    assert metrics.trades == 30_000
    assert [size for size, _ in metrics.batches] == [3_000] * 10
    pools = {container.engine().pool_of(s) for s in ("AAA", "BBB")}
    assert metrics.refits["isolation_forest"] == len(pools)  # one per pool and epoch, not per symbol


def test_metrics_are_served_on_loopback_unless_an_address_is_given() -> None:
    """Every interface was the default: a worker run on a host served its metrics to the network."""
    server = build_container(metrics="prometheus", metrics_port=0).metrics_server().start()
    try:
        assert server.addr == "127.0.0.1"
    finally:
        server.stop()


def test_container_serves_the_prometheus_metrics_over_http() -> None:
    container = build_container(metrics="prometheus", metrics_addr="127.0.0.1", metrics_port=0,
                                metrics_symbols="NVDA")
    metrics = container.metrics()
    assert isinstance(metrics, PrometheusMetrics) and metrics.symbols == {"NVDA"}
    metrics.anomalies_found("high_volume", "NVDA", 1)
    server = container.metrics_server().start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
            body = response.read().decode()
    finally:
        server.stop()
    assert 'stockanomaly_anomalies_total{detector="high_volume",symbol="NVDA"} 1.0' in body
    assert "stockanomaly_trades_processed_total 0.0" in body
    assert "process_cpu_seconds_total" in body  # the process collectors come along


def test_metrics_server_takes_the_next_free_port_of_its_span() -> None:
    first = MetricsServer(CollectorRegistry(), addr="127.0.0.1", port=0).start()  # a port known free
    taken = first.port
    first.stop()
    replicas = [MetricsServer(CollectorRegistry(), addr="127.0.0.1", port=taken, span=3).start()
                for _ in range(2)]
    try:
        ports = [server.port for server in replicas]
        assert ports[0] == taken and ports[1] in (taken + 1, taken + 2)
        for port in ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                assert response.status == 200
    finally:
        for server in replicas:
            server.stop()


def test_metrics_server_with_no_span_refuses_a_taken_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(OSError):
            MetricsServer(CollectorRegistry(), addr="127.0.0.1", port=busy.getsockname()[1]).start()


def test_container_passes_the_metrics_port_span_on() -> None:
    container = build_container(metrics="prometheus", metrics_port=29100, metrics_port_span=4)
    server = container.metrics_server()
    assert (server.port, server.span) == (29100, 4)
