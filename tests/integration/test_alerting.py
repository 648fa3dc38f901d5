"""Alerting end to end: the real Prometheus scrapes a running worker and indexer; the anomaly-rate
alert fires on a burst, and the Elasticsearch alert fires while Elasticsearch is unreachable."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from adapters.memory import InMemoryTradeSource
from adapters.synthetic import generate_market
from entrypoints.container import build_container
from integration_support import GatedProxy, as_messages, eventually, eventually_async, free_port, stop_processes

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules" / "anomalies.yml"
PARTITIONS = 2
RATIO_THRESHOLD = 0.001  # StockanomalyAnomalyRateHigh: more than 0.1% of trades flagged
# Production windows shrunk so the test takes seconds: the target is scraped every second.
WINDOWS = {"[5m]": "[30s]", "[1h]": "[2m]"}


def short_window_rules(text: str, suffix: str) -> str:
    """deploy/prometheus/rules with test-sized windows, `for:` and evaluation interval, reading only
    this test's target (label `it`), recording under its own names so nothing collides with the
    real rule groups, and every alert labelled `it` so this test finds its own."""
    config = yaml.safe_load(text)
    prefix = f"it_{suffix}:"
    for group in config["groups"]:
        group["name"] = f"it-{suffix}-{group['name']}"
        group["interval"] = "1s"
        for rule in group["rules"]:
            expr = re.sub(r"\b(stockanomaly_[A-Za-z0-9_]+)\b(?!\{)", rf'\1{{it="{suffix}"}}', rule["expr"])
            expr = re.sub(r"\b(stockanomaly_[A-Za-z0-9_]+)\{(?!it=)", rf'\1{{it="{suffix}",', expr)  # with matchers
            for long, short in WINDOWS.items():
                expr = expr.replace(long, short)
            rule["expr"] = expr.replace("stockanomaly:", prefix)
            if "record" in rule:
                rule["record"] = rule["record"].replace("stockanomaly:", prefix)
            else:
                rule["for"] = "5s"
                rule.setdefault("labels", {})["it"] = suffix
    return yaml.safe_dump(config, sort_keys=False)


def query(base: str, promql: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


def alerts(base: str, name: str, suffix: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/v1/alerts", timeout=5) as response:
        found = json.load(response)["data"]["alerts"]
    return [a for a in found if a["labels"].get("alertname") == name and a["labels"].get("it") == suffix]


@pytest.fixture(scope="module")
def burst() -> np.ndarray:
    """A short, anomaly-dense tape: 30 injected events of each type in 20,000 trades."""
    return generate_market(symbols=2, trades=20_000, seed=5, events_per_type=30).trades


@pytest.fixture(scope="module")
def noisy_detectors(burst: np.ndarray) -> set[str]:
    """The detectors that flag more than the alert's share of this tape (embedded replay)."""
    container = build_container()
    container.replay()(InMemoryTradeSource(burst, chunk_size=5_000))
    per = Counter(a.detector for a in container.collected_anomalies().anomalies)
    noisy = {d for d, n in per.items() if n / len(burst) > RATIO_THRESHOLD}
    assert noisy, per
    return noisy


def test_rules_and_their_short_window_variant_pass_promtool_check(tmp_path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (it comes with Debian's prometheus package)")
    variant = tmp_path / "variant.yml"
    variant.write_text(short_window_rules(RULES.read_text(), "check"))
    rules = sorted(str(p) for p in RULES.parent.glob("*.yml"))
    result = subprocess.run([promtool, "check", "rules", *rules, str(variant)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


async def produce(bootstrap: str, topic: str, trades: np.ndarray) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for key, value in as_messages(trades):
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.mark.asyncio
async def test_a_burst_of_anomalies_through_a_scraped_worker_fires_the_anomaly_rate_alert(
        kafka_bootstrap, new_topic, suffix, tmp_path, es_url, es_prefix, prometheus_url, prometheus_target,
        prometheus_rules, burst, noisy_detectors, alert_webhook) -> None:
    topics = {name: await new_topic(name, partitions=PARTITIONS) for name in ("trades", "anomalies", "dlq", "incidents")}
    metrics_port = free_port()
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, STOCKANOMALY_APP_ID=f"it-alerting-{suffix}",
               STOCKANOMALY_TRADES_TOPIC=topics["trades"], STOCKANOMALY_ANOMALIES_TOPIC=topics["anomalies"],
               STOCKANOMALY_DLQ_TOPIC=topics["dlq"], STOCKANOMALY_INCIDENTS_TOPIC=topics["incidents"],
               STOCKANOMALY_ES_INCIDENTS_PREFIX=f"{es_prefix}.incidents", STOCKANOMALY_PARTITIONS=str(PARTITIONS),
               STOCKANOMALY_DATA_DIR=str(tmp_path / "data"), STOCKANOMALY_WORKER_WEB_PORT=str(free_port()),
               STOCKANOMALY_METRICS_ADDR="127.0.0.1", STOCKANOMALY_METRICS_PORT=str(metrics_port),
               STOCKANOMALY_LOG_LEVEL="DEBUG", ELASTICSEARCH_URL=es_url, STOCKANOMALY_ES_INDEX_PREFIX=es_prefix)
    log_path = tmp_path / "worker.log"
    indexer_port = free_port()
    gate = GatedProxy(es_url)  # the indexer's way to Elasticsearch, cut later on
    gate.open()
    with open(log_path, "ab") as log, open(tmp_path / "indexer.log", "ab") as indexer_log:
        worker = subprocess.Popen([sys.executable, "-m", "faust", "-A", "entrypoints.worker", "worker", "-l", "warn"],
                                  cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        indexer = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "entrypoints.indexer", "worker", "-l", "warn"], cwd=tmp_path,
            env=dict(env, STOCKANOMALY_INDEXER_METRICS_PORT=str(indexer_port),
                     STOCKANOMALY_INDEXER_WEB_PORT=str(free_port()), ELASTICSEARCH_URL=gate.url),
            stdout=indexer_log, stderr=subprocess.STDOUT)
    try:
        prometheus_target([f"127.0.0.1:{metrics_port}", f"127.0.0.1:{indexer_port}"],
                          labels={"__scrape_interval__": "1s", "__scrape_timeout__": "1s", "it": suffix})
        prometheus_rules(short_window_rules(RULES.read_text(), suffix))
        mine = f'{{it="{suffix}"}}'  # the worker and the indexer of this test
        worker_only = f'{{it="{suffix}",instance="127.0.0.1:{metrics_port}"}}'
        # Counters must be seen at 0 before the burst, or rate() has no earlier sample to compare.
        eventually(lambda: query(prometheus_url, f"count_over_time(stockanomaly_trades_processed_total{worker_only}[1m]) >= 3"),
                   timeout=120, interval=0.5, what=f"Prometheus scraping the worker (log {log_path})")

        await produce(kafka_bootstrap, topics["trades"], burst)

        firing = eventually(
            lambda: [a for a in alerts(prometheus_url, "StockanomalyAnomalyRateHigh", suffix) if a["state"] == "firing"],
            timeout=120, interval=0.5, what=f"StockanomalyAnomalyRateHigh firing (worker log {log_path})")
        assert {a["labels"]["detector"] for a in firing} <= noisy_detectors
        assert firing[0]["labels"]["severity"] == "warning"
        assert "of trades" in firing[0]["annotations"]["summary"]
        # Prometheus hands it to Alertmanager, which routes a warning to the warnings receiver.
        delivered = eventually(
            lambda: [a for a in alert_webhook.alerts("/warning") if a["labels"].get("it") == suffix
                     and a["labels"]["alertname"] == "StockanomalyAnomalyRateHigh" and a["status"] == "firing"],
            timeout=90, interval=0.5, what="Alertmanager delivering StockanomalyAnomalyRateHigh to the webhook")
        assert delivered[0]["annotations"]["runbook_url"] == "README.md#alert-stockanomalyanomalyratehigh"
        assert not [a for a in alert_webhook.alerts("/page") if a["labels"].get("it") == suffix]

        # The other series the worker exports made it to Prometheus too.
        def scraped(promql: str) -> float | None:
            result = query(prometheus_url, promql)
            return float(result[0]["value"][1]) if result else None

        assert scraped(f"stockanomaly_trades_processed_total{worker_only}") == len(burst)
        anomalies = scraped(f"sum(stockanomaly_anomalies_total{worker_only})")
        assert anomalies and anomalies >= len(noisy_detectors)
        anomaly_docs = f'{{it="{suffix}",kind="anomalies"}}'
        eventually(lambda: scraped(f"sum(stockanomaly_elasticsearch_writes_total{anomaly_docs})") == anomalies,
                   timeout=60, interval=0.5, what="the indexer's Elasticsearch writes scraped")
        assert scraped(f"sum(stockanomaly_batch_trades_sum{worker_only})") == len(burst)

        async def caught_up() -> bool:
            lag = query(prometheus_url, f"stockanomaly_consumer_lag{worker_only}")
            symbols = scraped(f"stockanomaly_state_symbols{worker_only}")
            return len(lag) == PARTITIONS and all(float(s["value"][1]) == 0 for s in lag) and symbols == 2

        await eventually_async(caught_up, timeout=60, interval=0.5, what="consumer lag 0 and 2 symbols held")

        # Elasticsearch unreachable: the indexer retries (counted as it goes, not after a success)
        # and the page-level alert fires; the worker carries on regardless.
        gate.cut()
        later = burst.copy()
        later["ts_event"] += 86_400 * 10**9  # the next day's tape of the same symbols
        later["ts_recv"] += 86_400 * 10**9
        await produce(kafka_bootstrap, topics["trades"], later)
        failing = eventually(
            lambda: [a for a in alerts(prometheus_url, "StockanomalyElasticsearchWritesFailing", suffix)
                     if a["state"] == "firing"],
            timeout=180, interval=1.0, what="StockanomalyElasticsearchWritesFailing firing")
        assert failing[0]["labels"]["severity"] == "page"
        eventually(lambda: [a for a in alert_webhook.alerts("/page") if a["labels"].get("it") == suffix
                            and a["labels"]["alertname"] == "StockanomalyElasticsearchWritesFailing"],
                   timeout=90, interval=0.5, what="Alertmanager delivering the page to the pager webhook")
        assert (scraped(f"sum(stockanomaly_elasticsearch_retries_total{mine})") or 0) > 0
        eventually(lambda: scraped(f"stockanomaly_trades_processed_total{worker_only}") == 2 * len(burst),
                   timeout=60, interval=0.5, what="the worker processing on during the outage")
        gate.open()
        found = scraped(f"sum(stockanomaly_anomalies_total{worker_only})")
        eventually(lambda: scraped(f"sum(stockanomaly_elasticsearch_writes_total{anomaly_docs})") == found,
                   timeout=120, interval=1.0, what="the indexer catching up once Elasticsearch is back")
    finally:
        gate.close()
        stop_processes((worker, indexer))
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    batches = [line for line in lines if line.get("event") == "batch"]
    assert batches and all({"partition", "offsets", "trades", "seconds"} <= set(b) for b in batches)
    assert sum(b["trades"] for b in batches) == 2 * len(burst)
    assert any(line.get("event") == "anomaly" and "symbol" in line and "partition" in line for line in lines)
